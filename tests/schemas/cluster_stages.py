"""Two device stages for the cluster tests (the pipeline example's stages before they were
connected on the device): stage2 squares, stage3 sums. Each message carries `origin`, so a
test can match a result to the row or object that entered without relying on ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from ringgen import ActorContext, MaxLen, message, ring_kernel


@message
@dataclass
class Clipped:
    origin: UUID  # the message this came from, so results can be matched to inputs
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Squares:
    origin: UUID
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Total:
    origin: UUID
    energy: float = 0.0
    count: int = 0


STAGE2_CU = r"""
__device__ bool stage2_handle(const Clipped& req, Squares& resp, rg_ctx& ctx) {
    (void)ctx;
    for (uint32_t i = threadIdx.x; i < req.values.count; i += blockDim.x)
        resp.values.items[i] = req.values.items[i] * req.values.items[i];
    if (threadIdx.x == 0) {
        resp.values.count = req.values.count;
        resp.origin = req.origin;
    }
    return true;
}
"""


@ring_kernel(kernel_id="stage2", input=Clipped, output=Squares, block=64, cuda=STAGE2_CU)
def stage2(req: Clipped) -> Squares:
    return Squares(origin=req.origin, values=[v * v for v in req.values])


STAGE3_CU = r"""
__device__ bool stage3_handle(const Squares& req, Total& resp, rg_ctx& ctx) {
    (void)ctx;
    __shared__ double part[32];
    double s = 0.0;
    for (uint32_t i = threadIdx.x; i < req.values.count; i += blockDim.x) s += req.values.items[i];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (uint32_t t = 0; t < blockDim.x; ++t) total += part[t];  // in order: reproducible
        resp.energy = total;
        resp.count = req.values.count;
        resp.origin = req.origin;
    }
    return true;
}
"""


@ring_kernel(kernel_id="stage3", input=Squares, output=Total, block=32, cuda=STAGE3_CU)
def stage3(req: Squares) -> Total:
    partial = [sum(req.values[t::32]) for t in range(32)]
    total = 0.0
    for p in partial:
        total += p
    return Total(origin=req.origin, energy=total, count=len(req.values))



@ring_kernel(kernel_id="stage1", input=Clipped, output=Clipped)
async def stage1(ctx: ActorContext) -> None:
    """A host actor (no compile): echoes, for placement tests of a kernel that is not running."""
    while not ctx.should_terminate:
        msg = await ctx.receive(timeout=0.1)
        if msg is not None:
            await ctx.send(msg)
