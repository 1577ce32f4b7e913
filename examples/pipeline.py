"""Pipeline: a host stage validates and acknowledges, two device stages
compute, a host relay connects them.

    raw values -> stage1 (host: clip, ack) -> stage2 (device: squares) -> relay -> stage3
    (device: sum of squares) -> the caller
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from ringgen import ActorContext, KernelStateError, MaxLen, RingKernelRuntime, message, ring_kernel

LIMIT = 1000.0


@message
@dataclass
class RawData:
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Ack:
    accepted: int = 0


@message
@dataclass
class Clipped:
    origin: UUID  # the RawData this came from, so results can be matched to inputs
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


@ring_kernel(kernel_id="stage1", input=RawData, output=Ack)
async def stage1(ctx: ActorContext) -> None:
    while not ctx.should_terminate:
        raw = await ctx.receive(timeout=0.1)
        if raw is None:
            continue
        clipped = [min(max(v, -LIMIT), LIMIT) for v in raw.values]
        await ctx.runtime.send("stage2", Clipped(origin=raw.message_id, values=clipped,
                                                 priority=raw.priority))
        await ctx.send(raw.reply(Ack, accepted=len(clipped)))  # acknowledge to the caller


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


@ring_kernel(kernel_id="relay", input=None)
async def relay(ctx: ActorContext) -> None:
    """Moves stage2's results on to stage3 (device kernels answer the host, which forwards)."""
    while not ctx.should_terminate:
        try:
            batch = await ctx.runtime.receive_many("stage2", 256, timeout=0.1)
        except KernelStateError:  # stage2 was terminated: nothing more will come
            return
        for squares in batch:
            await ctx.runtime.send("stage3", squares)


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


async def demo(runtime: RingKernelRuntime) -> None:
    for stage in ("stage3", "stage2", "relay", "stage1"):
        await runtime.launch(stage)
    inputs = [RawData(values=[1.0, 2.0, 3.0]), RawData(values=[5000.0, -2.0]),
              RawData(values=[0.5] * 64, priority=250)]
    for raw in inputs:
        ack = await runtime.request("stage1", raw, timeout=5.0)
        print(f"  stage1 acknowledged {ack.accepted} values")
    by_origin = {}
    for _ in inputs:
        total = await runtime.receive("stage3", timeout=5.0)
        by_origin[total.origin] = total
    for raw in inputs:
        total = by_origin[raw.message_id]
        print(f"  {len(raw.values):2} values -> energy {total.energy} (after clipping to +-{LIMIT:g})")
