"""Kernels for lifecycle tests: one that hangs on request (a handler that never returns, or a
thread that never reaches the barrier the others wait at), and one that touches a buffer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import BufferRef, message, ring_kernel


@message
@dataclass
class Job:
    seq: int
    mode: np.int32 = 0  # 1: thread 0 loops forever; 2: thread 1 never reaches the barrier
    buffer: BufferRef | None = None


@message
@dataclass
class Done:
    seq: int
    first: float = 0.0  # the referenced buffer's first double (0 when there is none)


HANG_CU = r"""
__device__ bool hang_handle(const Job& req, Done& resp, rg_ctx& ctx) {
    volatile uint64_t spins = 0;
    if (req.mode == 1 && threadIdx.x == 0)
        for (;;) spins = spins + 1;
    if (req.mode == 2 && threadIdx.x == 1)
        for (;;) spins = spins + 1;
    __syncthreads();
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        if (req.buffer.present) {
            rg_buffer_view view = ctx.buffer(req.buffer.value);
            resp.first = view.data && view.dtype == 'd' ? view.as<double>()[0] : 0.0;
        }
    }
    return true;
}
"""


@ring_kernel(kernel_id="hang", input=Job, output=Done, block=4, grid=1, cuda=HANG_CU)
def hang(req: Job) -> Done:
    return Done(seq=req.seq)
