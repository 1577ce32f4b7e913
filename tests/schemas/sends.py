"""Kernels that send besides their response (sends=): a worker that sends each job's audits
from several threads at once, device and host auditors, a crashy auditor and a host actor
that sends to a device kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ringgen import ActorContext, message, ring_kernel


@message
@dataclass
class Job:
    seq: int
    audits: int = 1  # how many Audit messages the worker sends for it (threads 0..audits-1)
    crash_at: int = -1  # the audit k that makes the crashy auditor die


@message
@dataclass
class Done:
    seq: int
    audits: int = 0


@message
@dataclass
class Audit:
    seq: int
    k: int = 0
    crash: bool = False
    hops: int = 0


WORKER_CU = r"""
__device__ bool worker_handle(const Job& req, Done& resp, worker_ctx& ctx) {
    if (threadIdx.x < req.audits) {  // several threads send at once, one message each
        Audit a;
        rg_init_Audit(&a);
        a.seq = req.seq;
        a.k = threadIdx.x;
        a.crash = req.crash_at == (int64_t)threadIdx.x;
        a.priority = req.priority;
        ctx.send_audit(a);  // false only when terminated while the target is full
    }
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        resp.audits = req.audits;
    }
    return true;
}
"""


@ring_kernel(kernel_id="worker", input=Job, output=Done, block=8, grid=2, cuda=WORKER_CU,
             sends={"audit": Audit})
def worker(req: Job, ctx: Any) -> Done:
    for k in range(req.audits):
        ctx.send("audit", Audit(seq=req.seq, k=k, crash=req.crash_at == k, priority=req.priority))
    return Done(seq=req.seq, audits=req.audits)


SILENT_CU = r"""
__device__ bool silent_handle(const Job& req, Done& resp, silent_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) resp.seq = req.seq;
    return true;
}
"""


@ring_kernel(kernel_id="silent", input=Job, output=Done, block=2, cuda=SILENT_CU,
             sends={"audit": Audit, "alarm": Audit})
def silent(req: Job, ctx: Any) -> Done:
    return Done(seq=req.seq)


AUDITOR_CU = r"""
__device__ bool {id}_handle(const Audit& req, Audit& resp, {id}_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        if ({crashy} && req.crash) __trap();
        resp.seq = req.seq;
        resp.k = req.k;
        resp.hops = req.hops + 1;
    }
    return true;
}
"""


def _auditor(kernel_id: str, crashy: bool) -> str:
    return AUDITOR_CU.replace("{id}", kernel_id).replace("{crashy}", "1" if crashy else "0")


@ring_kernel(kernel_id="auditor", input=Audit, output=Audit, block=2, grid=2,
             cuda=_auditor("auditor", False))
def auditor(req: Audit) -> Audit:
    return Audit(seq=req.seq, k=req.k, hops=req.hops + 1)


@ring_kernel(kernel_id="crashy_auditor", input=Audit, output=Audit, block=2,
             cuda=_auditor("crashy_auditor", True))
def crashy_auditor(req: Audit) -> Audit:
    return Audit(seq=req.seq, k=req.k, hops=req.hops + 1)


@ring_kernel(kernel_id="host_auditor", input=Audit, output=Audit)
async def host_auditor(ctx: ActorContext) -> None:
    """A host stage: answers each Audit (device -> host actor over a connection)."""
    while not ctx.should_terminate:
        req = await ctx.receive(timeout=0.05)
        if req is not None:
            await ctx.send(req.reply(Audit, seq=req.seq, k=req.k, hops=req.hops + 1))


@ring_kernel(kernel_id="host_worker", input=Job, output=Done, sends={"audit": Audit})
async def host_worker(ctx: ActorContext) -> None:
    """A host actor that sends to a device kernel (host actor -> device)."""
    while not ctx.should_terminate:
        req = await ctx.receive(timeout=0.05)
        if req is None:
            continue
        for k in range(req.audits):
            await ctx.send("audit", Audit(seq=req.seq, k=k, priority=req.priority))
        await ctx.send(req.reply(Done, seq=req.seq, audits=req.audits))
