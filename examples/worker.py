"""The worker: a block-wide sum of a request's data, on the device.

    ringgen build examples/worker.py -o generated
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, RingKernelRuntime, message, ring_kernel


@message
@dataclass
class WorkRequest:
    data: Annotated[list[float], MaxLen(256)]  # bounded: becomes a fixed C array
    operation: Annotated[str, MaxLen(16)] = "sum"


@message
@dataclass
class WorkResponse:
    result: float = 0.0
    success: bool = True
    error_code: int = 0


WORKER_CU = r"""
__device__ bool worker_handle(const WorkRequest& req, WorkResponse& resp, rg_ctx& ctx) {
    (void)ctx;
    __shared__ double part[128];                       // the whole block runs the handler
    double s = 0.0;
    for (uint32_t i = threadIdx.x; i < req.data.count; i += blockDim.x) s += req.data.items[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) resp.result = part[0];
    return true;                                       // emit the response
}
"""


@ring_kernel(kernel_id="worker", input=WorkRequest, output=WorkResponse,
             block=128, queue_size=1024, cuda=WORKER_CU)
def worker(req: WorkRequest) -> WorkResponse:  # Python reference semantics
    return WorkResponse(result=sum(req.data))


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("worker")
    req = WorkRequest(data=[1, 2, 3])
    await runtime.send("worker", req)
    resp = await runtime.receive("worker", timeout=5.0)
    assert resp.correlation_id == req.message_id
    print(f"  sum of [1, 2, 3] on {runtime.backend}: {resp.result} (correlated: "
          f"{resp.correlation_id == req.message_id})")
    resp = await runtime.request("worker", WorkRequest(data=[4.0]), timeout=5.0)  # correlated
    print(f"  request(sum [4.0]) -> {resp.result}")
    many = [WorkRequest(data=[float(i)] * 256, priority=i % 256) for i in range(1000)]
    await runtime.send_many("worker", many)
    results = await runtime.receive_many("worker", 1000, timeout=5.0)
    while len(results) < 1000:
        results += await runtime.receive_many("worker", 1000 - len(results), timeout=5.0)
    t = runtime.telemetry("worker")
    print(f"  1000 requests of 256 values: all answered: {len(results) == 1000}; "
          f"p50 {t.latency_p50_us:.0f} us, p99 {t.latency_p99_us:.0f} us")
