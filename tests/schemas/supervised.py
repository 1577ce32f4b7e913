"""Kernels for the supervision tests (tests/test_supervision.py): `sup` fails on request in each
way a kernel can (a segfault, __trap(), a handler that never returns, a write over its region's
output ring, a slow request a kill catches), keeps a per-block count in its state (default 100,
so a restart shows as the count starting over), and answers whether the request came
redelivered (RG_FLAG_REDELIVERED). `relay` feeds it over a route and `sink` takes its output
over another, for the connections a restart must restore."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import message, ring_kernel

# What a Job asks `sup` to do:
ANSWER = 0
SEGFAULT = 1
TRAP = 2
HANG = 3  # thread 0 loops forever: the watchdog's case
SLOW = 4  # 300 ms, for a kill -9 in the middle
REGION = 5  # writes an impossible tail index into its output ring: a RegionFault on the host
CRASH_FIRST = 6  # segfaults unless the request comes redelivered
ALWAYS_CRASH = 7  # segfaults, redelivered or not


@message
@dataclass
class Job:
    seq: int
    mode: np.int32 = 0


@message
@dataclass
class Result:
    seq: int = 0
    redelivered: np.int32 = 0
    count: int = 0


@dataclass
class Count:
    count: int = 100  # not zero: the host writes the defaults at each launch


SUP_CU = r"""
__device__ bool sup_handle(const Job& req, Result& resp, Count& state, sup_ctx& ctx) {
    volatile uint64_t spins = 0;
    bool again = (req.flags & RG_FLAG_REDELIVERED) != 0;
    if (req.mode == 3 && threadIdx.x == 0)
        for (;;) spins = spins + 1;
    __syncthreads();
    if (threadIdx.x == 0) {
        if (req.mode == 1 || req.mode == 7 || (req.mode == 6 && !again))
            *(volatile int*)nullptr = 1;
        if (req.mode == 2) __trap();
        if (req.mode == 5) {  // rung as a push rings it; no response, or the kernel's own
            // copy of the tail (published per batch) would be written over the scribble
            rg_region_ring(ctx.region, blockIdx.x, RG_LANES)->tail.value = ~0ull >> 1;
            rg_bell_ring(&ctx.region->control.out_bell);
        }
        for (int i = 0; req.mode == 4 && i < 300; ++i) __nanosleep(1000000);
        state.count += 1;
        resp.seq = req.seq;
        resp.redelivered = again ? 1 : 0;
        resp.count = state.count;
    }
    return req.mode != 5;
}
"""


@ring_kernel(kernel_id="sup", input=Job, output=Result, block=4, grid=1, state=Count, cuda=SUP_CU)
def sup(req: Job, state: Count) -> Result:
    state.count += 1
    return Result(seq=req.seq, count=state.count)


RELAY_CU = r"""
__device__ bool relay_handle(const Job& req, Job& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        resp.mode = req.mode;
    }
    return true;
}
"""


@ring_kernel(kernel_id="relay", input=Job, output=Job, block=4, grid=1, cuda=RELAY_CU)
def relay(req: Job) -> Job:
    return Job(seq=req.seq, mode=req.mode)


SINK_CU = r"""
__device__ bool sink_handle(const Result& req, Result& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        resp.redelivered = req.redelivered;
        resp.count = req.count;
    }
    return true;
}
"""


@ring_kernel(kernel_id="sink", input=Result, output=Result, block=4, grid=1, cuda=SINK_CU)
def sink(req: Result) -> Result:
    return Result(seq=req.seq, redelivered=req.redelivered, count=req.count)
