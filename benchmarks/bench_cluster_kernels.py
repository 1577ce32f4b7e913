"""bench_cluster's echo at the granularity that fits its handler: one thread per message
(per="thread"), the 32 threads of a block answering 32 messages at once. The handler is the
one of bench_kernels' echo and of bench_cluster's plain Ray actor (seq copied to the reply);
bench_kernels' echo runs it per="block", 32 threads per message of which one does the copy."""

from __future__ import annotations

from bench_kernels import Done, Job

from ringgen import ring_kernel

ECHO_CU = r"""
__device__ bool echo_thread_handle(const Job& req, Done& resp, rg_ctx& ctx) {
    (void)ctx;
    resp.seq = req.seq;  // one thread, one message
    return true;
}
"""


@ring_kernel(kernel_id="echo_thread", input=Job, output=Done, block=32, per="thread",
             cuda=ECHO_CU)
def echo_thread(req: Job) -> Done:
    return Done(seq=req.seq)
