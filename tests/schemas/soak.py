"""A three-stage device pipeline for the soak tests (tests/test_pipeline.py): an entry stage, a
middle stage that dies on tag -1, and a slow end (it naps `SLOW_NS` per message, so that the
routes fill and backpressure travels upstream)."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen import message, ring_kernel

SLOW_NS = 20_000


@message
@dataclass
class Job:
    seq: int
    tag: int = 0  # -1: the middle stage crashes on it
    hops: int = 0


STAGE_CU = r"""
__device__ bool {id}_handle(const Job& req, Job& resp, {id}_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        if ({crash} && req.tag == -1) __trap();
        if ({slow_ns}) __nanosleep({slow_ns});
        resp.seq = req.seq;
        resp.tag = req.tag;
        resp.hops = req.hops + 1;
    }
    return true;
}
"""


def _cu(kernel_id: str, crash: bool = False, slow_ns: int = 0) -> str:
    return (STAGE_CU.replace("{id}", kernel_id).replace("{crash}", "1" if crash else "0")
            .replace("{slow_ns}", str(slow_ns)))


def _stage(req: Job) -> Job:
    return Job(seq=req.seq, tag=req.tag, hops=req.hops + 1)


@ring_kernel(kernel_id="entry", input=Job, output=Job, block=2, cuda=_cu("entry"))
def entry(req: Job) -> Job:
    return _stage(req)


@ring_kernel(kernel_id="middle", input=Job, output=Job, block=2, cuda=_cu("middle", crash=True))
def middle(req: Job) -> Job:
    return _stage(req)


@ring_kernel(kernel_id="slow_end", input=Job, output=Job, block=2,
             cuda=_cu("slow_end", slow_ns=SLOW_NS))
def slow_end(req: Job) -> Job:
    return _stage(req)
