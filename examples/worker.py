"""The worker: a block-wide sum of a request's data, on the device, written in Python.

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


@ring_kernel(kernel_id="worker", input=WorkRequest, output=WorkResponse,
             block=128, queue_size=1024)
def worker(req: WorkRequest) -> WorkResponse:
    """Written in Python, translated to the device handler by `ringgen build`: the sum is a
    block reduction over the 128 threads that adds in Python's order."""
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
