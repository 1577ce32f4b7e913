"""Actor module used by the benchmarks: a 32-thread echo whose handler has no barrier."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen import message, ring_kernel


@message
@dataclass
class Job:
    seq: int = 0


@message
@dataclass
class Done:
    seq: int = 0


ECHO_CU = r"""
__device__ bool echo_handle(const Job& req, Done& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) resp.seq = req.seq;
    return true;
}
"""


@ring_kernel(kernel_id="echo", input=Job, output=Done, block=32, cuda=ECHO_CU)
def echo(req: Job) -> Done:
    return Done(seq=req.seq)
