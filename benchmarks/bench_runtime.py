"""The asyncio runtime on the CPU backend, beside what a user would write by hand: an asyncio
task serving an asyncio.PriorityQueue of msgpack-serialized messages, with a concurrent
consumer. A 32-thread kernel with a trivial handler (benchmarks/bench_kernels.py: echo).

    python benchmarks/bench_runtime.py

(a) round-trip p50/p99 of request(), baseline and ringgen in alternating rounds; (b) throughput
of send_many/receive_many with message objects; (c) throughput of send_array/receive_array with
numpy struct arrays.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ring import build_echo  # noqa: E402

from ringgen import RingKernelRuntime  # noqa: E402

LATENCY_N = 6000
LATENCY_ROUNDS = 12
OBJECTS_N = 100_000
ARRAYS_N = 2_000_000


class Baseline:
    """The hand-written server: msgpack bytes through an asyncio.PriorityQueue."""

    def __init__(self, job: type, done: type) -> None:
        self.job, self.done = job, done
        self.queue: asyncio.PriorityQueue[tuple[int, int, bytes]] = asyncio.PriorityQueue()
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self.order = itertools.count()
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        while True:
            _, _, data = await self.queue.get()
            req = self.job.deserialize(data)
            reply = req.reply(self.done, seq=req.seq).serialize()
            waiter = self.waiters.pop(req.message_id.bytes, None)
            if waiter is not None:
                waiter.set_result(reply)
            else:
                self.replies.put_nowait(reply)

    async def send(self, msg: Any) -> None:
        await self.queue.put((-msg.priority, next(self.order), msg.serialize()))

    async def request(self, msg: Any) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters[msg.message_id.bytes] = waiter
        await self.send(msg)
        return self.done.deserialize(await waiter)

    async def receive(self) -> Any:
        return self.done.deserialize(await self.replies.get())


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e6, q))


async def latency(requests: list[Any], make: Any) -> list[list[float]]:
    """Round trips of each request function, taken in alternating rounds: a shared machine's
    speed drifts by tens of percent over seconds, and both sides should see the same drift."""
    for request in requests:
        for i in range(200):
            await request(make(i))  # warm up
    samples: list[list[float]] = [[] for _ in requests]
    for _ in range(LATENCY_ROUNDS):
        for request, taken in zip(requests, samples, strict=True):
            for i in range(LATENCY_N // LATENCY_ROUNDS):
                msg = make(i)
                start = time.perf_counter()
                await request(msg)
                taken.append(time.perf_counter() - start)
    return samples


async def throughput_objects(send_many: Any, receive_many: Any, make: Any, n: int) -> float:
    msgs = [make(i) for i in range(n)]
    start = time.perf_counter()

    async def consume() -> None:
        got = 0
        while got < n:
            got += len(await receive_many(n - got))

    consumer = asyncio.ensure_future(consume())
    for i in range(0, n, 1000):
        await send_many(msgs[i:i + 1000])
    await consumer
    return n / (time.perf_counter() - start)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = build_echo(Path(tmp))
        job, done = pkg.Job, pkg.Done

        base = Baseline(job, done)

        async def base_many(msgs: list[Any]) -> None:
            for m in msgs:
                await base.send(m)

        async def base_recv(k: int) -> list[Any]:
            out = [await base.receive()]
            while len(out) < k and not base.replies.empty():
                out.append(await base.receive())
            return out

        base_obj = await throughput_objects(base_many, base_recv, lambda i: job(seq=i), OBJECTS_N // 2)

        async with RingKernelRuntime(pkg, backend="cpu", lane_capacity=1024) as rt:
            await rt.launch("echo", queue_size=1 << 21)
            base_lat, ours_lat = await latency(
                [base.request, lambda m: rt.request("echo", m, timeout=10.0)], lambda i: job(seq=i))
            ours_obj = await throughput_objects(
                lambda ms: rt.send_many("echo", ms),
                lambda k: rt.receive_many("echo", k, timeout=10.0), lambda i: job(seq=i),
                OBJECTS_N)
            arr = np.zeros(ARRAYS_N, dtype=pkg.DTYPES["Job"])
            arr["seq"] = np.arange(ARRAYS_N)
            arr["priority"] = 128
            start = time.perf_counter()

            async def drain() -> None:
                got = 0
                while got < ARRAYS_N:
                    got += len(await rt.receive_array("echo", 1 << 16, timeout=10.0))

            consumer = asyncio.ensure_future(drain())
            for i in range(0, ARRAYS_N, 1 << 16):
                await rt.send_array("echo", arr[i:i + (1 << 16)])
            await consumer
            ours_arr = ARRAYS_N / (time.perf_counter() - start)
        base.task.cancel()

    print("(a) request() round trip, p50 / p99")
    print(f"    baseline (asyncio.PriorityQueue + msgpack): {pct(base_lat, 50):7.1f} / "
          f"{pct(base_lat, 99):7.1f} us")
    print(f"    ringgen CPU backend:                        {pct(ours_lat, 50):7.1f} / "
          f"{pct(ours_lat, 99):7.1f} us")
    print(f"    p50 ratio (baseline / ringgen):             {pct(base_lat, 50) / pct(ours_lat, 50):7.2f}x")
    print("(b) send_many/receive_many, message objects")
    print(f"    baseline: {base_obj:12,.0f} msg/s   ringgen: {ours_obj:12,.0f} msg/s   "
          f"ratio {ours_obj / base_obj:5.1f}x")
    print("(c) send_array/receive_array, numpy struct arrays (no object per message)")
    print(f"    baseline: {base_obj:12,.0f} msg/s   ringgen: {ours_arr:12,.0f} msg/s   "
          f"ratio {ours_arr / base_obj:5.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
