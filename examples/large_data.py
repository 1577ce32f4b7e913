"""Large data: the message carries a reference to a UnifiedBuffer,
and the kernel reduces a million elements in place instead of copying them into a message."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import BufferRef, RingKernelRuntime, UnifiedBuffer, message, ring_kernel


@message
@dataclass
class GoodRequest:
    buffer: BufferRef  # reference to a UnifiedBuffer
    size: int


@message
@dataclass
class Reduction:
    total: float = 0.0
    maximum: float = 0.0
    found: bool = False


REDUCE_CU = r"""
__device__ bool reduce_handle(const GoodRequest& req, Reduction& resp, rg_ctx& ctx) {
    __shared__ double sums[256];
    __shared__ double maxima[256];
    rg_buffer_view view = ctx.buffer(req.buffer);
    bool ok = view.data != nullptr && view.dtype == 'd' && (uint64_t)req.size <= view.count();
    const double* x = view.as<double>();
    double s = 0.0, m = -1.0 / 0.0;
    for (int64_t i = threadIdx.x; ok && i < req.size; i += blockDim.x) {
        s += x[i];
        m = max(m, x[i]);
    }
    sums[threadIdx.x] = s;
    maxima[threadIdx.x] = m;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) {
            sums[threadIdx.x] += sums[threadIdx.x + w];
            maxima[threadIdx.x] = max(maxima[threadIdx.x], maxima[threadIdx.x + w]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        resp.found = ok;
        resp.total = ok ? sums[0] : 0.0;
        resp.maximum = ok ? maxima[0] : 0.0;
        if (!ok) ctx.fail();
    }
    return true;
}
"""


@ring_kernel(kernel_id="reduce", input=GoodRequest, output=Reduction, block=256, cuda=REDUCE_CU)
def reduce(req: GoodRequest) -> Reduction:
    data = UnifiedBuffer.of(req.buffer).host[:req.size]
    return Reduction(total=float(np.sum(data)), maximum=float(np.max(data)), found=True)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("reduce")
    buffer = runtime.unified_buffer(1_000_000, np.float64)
    buffer.host[:] = np.arange(1_000_000, dtype=np.float64) / 1000.0
    resp = await runtime.request("reduce", GoodRequest(buffer=buffer.ref, size=1_000_000),
                                 timeout=30.0)
    print(f"  sum of a million elements on the device: {resp.total:.1f} "
          f"(numpy: {buffer.host.sum():.1f}), max {resp.maximum}; state: {buffer.state.value}")
