"""Actor module of benchmarks/bench_bus.py: an axpy-like kernel at thread and at block
granularity (the same work, one request per thread or per block) and a 4 KB message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Axpy:
    a: float = 0.0
    x: float = 0.0
    y: float = 0.0


@message
@dataclass
class AxpyResult:
    r: float = 0.0


@message
@dataclass
class Blob:
    data: Annotated[bytes, MaxLen(4096)] = b""


@message
@dataclass
class BlobSum:
    total: int = 0


AXPY_CU = r"""
__device__ bool axpy_thread_handle(const Axpy& req, AxpyResult& resp, rg_ctx& ctx) {
    if (ctx.rank() == 0) resp.r = req.a * req.x + req.y;
    return true;
}
__device__ bool axpy_block_handle(const Axpy& req, AxpyResult& resp, rg_ctx& ctx) {
    if (ctx.rank() == 0) resp.r = req.a * req.x + req.y;
    return true;
}
"""

BLOB_CU = r"""
__device__ bool blob_handle(const Blob& req, BlobSum& resp, rg_ctx& ctx) {
    __shared__ unsigned long long total;
    if (ctx.rank() == 0) total = 0;
    ctx.sync();
    unsigned long long mine = 0;
    for (uint32_t i = ctx.rank(); i < req.data.len; i += ctx.group_size) mine += req.data.data[i];
    atomicAdd(&total, mine);
    ctx.sync();
    if (ctx.rank() == 0) resp.total = (int64_t)total;
    return true;
}
"""


@ring_kernel(kernel_id="axpy_thread", input=Axpy, output=AxpyResult, block=32, per="thread",
             cuda=AXPY_CU)
def axpy_thread(req: Axpy) -> AxpyResult:
    return AxpyResult(r=req.a * req.x + req.y)


@ring_kernel(kernel_id="axpy_block", input=Axpy, output=AxpyResult, block=32, per="block",
             batch=32, cuda=AXPY_CU)
def axpy_block(req: Axpy) -> AxpyResult:
    return AxpyResult(r=req.a * req.x + req.y)


@ring_kernel(kernel_id="blob", input=Blob, output=BlobSum, block=32, cuda=BLOB_CU)
def blob(req: Blob) -> BlobSum:
    return BlobSum(total=sum(req.data))


# Fire-and-forget: the kernel's own throughput, with no output ring for the host to drain.
SINK_CU = r"""
__device__ void sink_thread_handle(const Axpy& req, rg_ctx& ctx) {
    __shared__ double kept[1024];
    if (ctx.rank() == 0) kept[threadIdx.x] = req.a * req.x + req.y;
}
__device__ void sink_block_handle(const Axpy& req, rg_ctx& ctx) {
    __shared__ double kept[1024];
    if (ctx.rank() == 0) kept[threadIdx.x] = req.a * req.x + req.y;
}
"""


@ring_kernel(kernel_id="sink_thread", input=Axpy, block=128, per="thread", cuda=SINK_CU)
def sink_thread(req: Axpy) -> None:
    pass


@ring_kernel(kernel_id="sink_block", input=Axpy, block=128, per="block", batch=32, cuda=SINK_CU)
def sink_block(req: Axpy) -> None:
    pass
