"""A kernel whose double-buffered messages cannot fit a block's 48 KB of static shared memory:
`ringgen build` must refuse it, naming the message, its size and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Samples:
    values: Annotated[list[float], MaxLen(20000)]


@message
@dataclass
class Total:
    total: float = 0.0


SUM_CU = r"""
__device__ bool sum_samples_handle(const Samples& req, Total& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (uint32_t i = 0; i < req.values.count; ++i) t += req.values.items[i];
        resp.total = t;
    }
    return true;
}
"""


@ring_kernel(kernel_id="sum_samples", input=Samples, output=Total, block=32, grid=1, cuda=SUM_CU)
def sum_samples(req: Samples) -> Total:
    return req.reply(Total, total=sum(req.values))
