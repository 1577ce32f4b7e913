"""Actor module used by the benchmarks: a 32-thread echo whose handler has no barrier, and the
seed's WorkRequest summed by a 128-thread block (examples/worker.py's kernel, as "work").

Both also at the granularity that fits their small payloads, per="thread" ("echo_thread",
"work_thread"): each of a 32-thread block's threads handles a request of its own, so a round
takes a batch of requests with no barrier per request. The block kernels stay, as the seed's
and as the figures printed beside these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, message, ring_kernel


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


ECHO_THREAD_CU = r"""
__device__ bool echo_thread_handle(const Job& req, Done& resp, rg_ctx& ctx) {
    (void)ctx;
    resp.seq = req.seq;
    return true;
}
"""


@ring_kernel(kernel_id="echo_thread", input=Job, output=Done, block=32, per="thread",
             cuda=ECHO_THREAD_CU)
def echo_thread(req: Job) -> Done:
    return Done(seq=req.seq)


@message
@dataclass
class WorkRequest:
    data: Annotated[list[float], MaxLen(256)]
    operation: Annotated[str, MaxLen(16)] = "sum"


@message
@dataclass
class WorkResponse:
    result: float = 0.0


@ring_kernel(kernel_id="work", input=WorkRequest, output=WorkResponse, block=128)
def work(req: WorkRequest) -> WorkResponse:
    return WorkResponse(result=sum(req.data))


# The same sum, a thread per request: the translator folds the list in one thread's loop.
@ring_kernel(kernel_id="work_thread", input=WorkRequest, output=WorkResponse, block=32,
             per="thread")
def work_thread(req: WorkRequest) -> WorkResponse:
    return WorkResponse(result=sum(req.data))
