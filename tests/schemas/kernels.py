"""Ring kernels under test: an echo for protocol stress, a warp-shuffle reduction, a crasher,
and a fire-and-forget sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Ping:
    seq: int
    mode: np.int32 = 0  # crasher: 1 segfault, 2 failed assert, 3 __trap(), 4 ctx.fail(), 5 slow


@message
@dataclass
class Pong:
    seq: int
    block: np.int32 = 0


@message
@dataclass
class Numbers:
    values: Annotated[list[np.int64], MaxLen(100)]


@message
@dataclass
class Stats:
    total: int = 0
    maximum: int = 0
    count: np.int32 = 0


ECHO_CU = r"""
__device__ bool echo_handle(const Ping& req, Pong& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        resp.block = (int32_t)blockIdx.x;
    }
    return true;
}
"""


@ring_kernel(kernel_id="echo", input=Ping, output=Pong, block=32, grid=1, cuda=ECHO_CU)
def echo(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="echo4", input=Ping, output=Pong, block=8, grid=4, cuda=ECHO_CU.replace(
    "echo_handle", "echo4_handle"))
def echo4(req: Ping) -> Pong:
    return Pong(seq=req.seq)


STATS_CU = r"""
// A block-wide sum and max: a warp shuffle reduction, then one value per warp through shared
// memory. Exercises __shfl_down_sync, __syncthreads and shared arrays.
__device__ bool stats_handle(const Numbers& req, Stats& resp, rg_ctx& ctx) {
    (void)ctx;
    __shared__ int64_t warp_sum[32];
    __shared__ int64_t warp_max[32];
    int64_t sum = 0, top = INT64_MIN;
    for (uint32_t i = threadIdx.x; i < req.values.count; i += blockDim.x) {
        sum += req.values.items[i];
        top = max(top, req.values.items[i]);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        sum += __shfl_down_sync(0xffffffffu, sum, offset);
        top = max(top, __shfl_down_sync(0xffffffffu, top, offset));
    }
    if (threadIdx.x % 32 == 0) {
        warp_sum[threadIdx.x / 32] = sum;
        warp_max[threadIdx.x / 32] = top;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (uint32_t w = 1; w < blockDim.x / 32; ++w) {
            warp_sum[0] += warp_sum[w];
            warp_max[0] = max(warp_max[0], warp_max[w]);
        }
        resp.total = warp_sum[0];
        resp.maximum = req.values.count ? warp_max[0] : 0;
        resp.count = (int32_t)req.values.count;
    }
    return true;
}
"""


@ring_kernel(kernel_id="stats", input=Numbers, output=Stats, block=64, cuda=STATS_CU)
def stats(req: Numbers) -> Stats:
    return Stats(total=sum(req.values), maximum=max(req.values, default=0), count=len(req.values))


CRASH_CU = r"""
__device__ bool crasher_handle(const Ping& req, Pong& resp, rg_ctx& ctx) {
    if (threadIdx.x == 0) {
        if (req.mode == 1) *(volatile int*)nullptr = 1;
        assert(req.mode != 2);  // a failed device assert aborts the kernel
        if (req.mode == 3) __trap();
        if (req.mode == 4) ctx.fail();
        for (int i = 0; req.mode == 5 && i < 200; ++i) __nanosleep(1000000);  // 200 ms
        resp.seq = req.seq;
    }
    return true;
}
"""


@ring_kernel(kernel_id="crasher", input=Ping, output=Pong, block=32, cuda=CRASH_CU)
def crasher(req: Ping) -> Pong:
    return Pong(seq=req.seq)


SINK_CU = r"""
__device__ void sink_handle(const Ping& req, rg_ctx& ctx) {
    (void)req;
    (void)ctx;
}
"""


@ring_kernel(kernel_id="sink", input=Ping, output=None, block=32, cuda=SINK_CU)
def sink(req: Ping) -> None:
    return None
