"""The asyncio runtime on the CPU backend, beside what a user would write by hand: an asyncio
task serving an asyncio.PriorityQueue of msgpack-serialized messages, with a concurrent
consumer. Kernels: benchmarks/bench_kernels.py (a 32-thread echo; the seed's WorkRequest), each
at the seed's per="block" and at per="thread", the granularity that fits their small payloads.

    python benchmarks/bench_runtime.py

Every target of issue 11 is printed as a ratio measured in this one run:
(a) round-trip p50 of request(), baseline and ringgen in alternating rounds (target: 2x the
    baseline), and beside the native round trip of bench_ring (b) polled for as request()
    polls, in one native call and for as long (target: within 3x of it);
(b) throughput of send_many/receive_many with message objects (target 10x);
(c) throughput of send_array/receive_array with numpy struct arrays (target 50x);
(d) 20,000 seed WorkRequests of three floats, sent one send() at a time and received one
    receive() at a time by a concurrent task (target 3x), beside what the kernel moves alone
    (struct rows, no Python per message): the ceiling of any host path to it.
(c) and (d) are printed for both kernels, each beside its own kernel-alone ceiling: the
    per="block" one (a 32-thread echo; "work", a 128-thread block reduction with barriers per
    request) and the per="thread" one ("echo_thread", "work_thread": a request per thread).
(e) the host's own share of a request (no target): thread CPU time per request() with the
    kernel's ring call (push_pop) answered in-process at once, so that neither the kernel nor
    the machine's other load is in the figure: what a request costs in Python.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ring import build_echo, ring_latency, ring_throughput  # noqa: E402

from ringgen import RingKernelRuntime  # noqa: E402
from ringgen.codecs.structs import StructCodec  # noqa: E402
from ringgen.runtime.backends import rings  # noqa: E402
from ringgen.runtime.backends.cpu import CpuKernel  # noqa: E402
from ringgen.runtime.device_channel import REQUEST_SPIN_S  # noqa: E402

LATENCY_N = 6000
LATENCY_ROUNDS = 12
OBJECTS_N = 100_000
ARRAYS_N = 2_000_000
ONE_AT_A_TIME_N = 20_000
KERNEL_KIND = {
    "echo": 'per="block", 32 threads, the seed\'s granularity',
    "echo_thread": 'per="thread", 32 threads: a request per thread',
    "work": 'per="block", 128 threads: a block reduction, ~8 barriers a request',
    "work_thread": 'per="thread", 32 threads: a request per thread, no barrier',
}


class Baseline:
    """The hand-written server: msgpack bytes through an asyncio.PriorityQueue."""

    def __init__(self, job: type, done: type, answer: Any = None) -> None:
        self.job, self.done = job, done
        self.answer = answer or (lambda req: req.reply(done, seq=req.seq))
        self.queue: asyncio.PriorityQueue[tuple[int, int, bytes]] = asyncio.PriorityQueue()
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self.order = itertools.count()
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        while True:
            _, _, data = await self.queue.get()
            req = self.job.deserialize(data)
            reply = self.answer(req).serialize()
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


async def one_at_a_time(send: Any, receive: Any, msgs: list[Any]) -> float:
    """send() each message, awaiting each, while another task receive()s them one by one."""
    start = time.perf_counter()

    async def consume() -> None:
        for _ in msgs:
            await receive()

    consumer = asyncio.ensure_future(consume())
    for m in msgs:
        await send(m)
    await consumer
    return len(msgs) / (time.perf_counter() - start)


def native_round_trip(pkg: Any) -> list[float]:
    """bench_ring (b), polled: one struct at a time through a kernel's rings, pushed and polled
    for in one native call as a lone request() does, for as long (no Python message)."""
    kernel = CpuKernel(pkg.package.kernel("echo"), lane_capacity=1024, out_capacity=4096)
    kernel.activate()
    try:
        ring_latency(kernel, 300, REQUEST_SPIN_S)  # warm up
        return ring_latency(kernel, LATENCY_N // 2, REQUEST_SPIN_S)
    finally:
        kernel.terminate()


def kernel_alone(pkg: Any, kernel_id: str, msg: Any, n: int) -> float:
    """What the kernel itself moves: n structs of `msg` pushed with push_wait while a thread
    pops them, no Python per message (the ceiling of any host path to it)."""
    kernel = CpuKernel(pkg.package.kernel(kernel_id), lane_capacity=1024, out_capacity=4096)
    kernel.activate()
    try:
        codec = StructCodec(type(msg), kernel.in_dtype)
        rows = np.frombuffer(codec.pack(msg) * n, dtype=kernel.in_dtype)
        size = kernel.info.out_dtype.itemsize  # type: ignore[union-attr]
        received = 0

        def consume() -> None:
            nonlocal received
            while received < n:
                received += len(kernel.pop_bytes(4096, timeout=5.0)) // size

        consumer = threading.Thread(target=consume)
        start = time.perf_counter()
        consumer.start()
        kernel.push_wait(0, rings.LANE_OF[msg.priority], rows, timeout=60.0)
        consumer.join()
        return n / (time.perf_counter() - start)
    finally:
        kernel.terminate()


async def host_share(rt: RingKernelRuntime, make: Any, n: int) -> float:
    """(e): microseconds of this thread's CPU per request() of kernel "echo", its push_pop
    answered by an in-process echo of the request's id (the best of five rounds)."""
    channel: Any = rt.channel("echo")
    kernel = channel.kernel
    reply = bytearray(channel.out_codec.pack(await rt.request("echo", make(0), timeout=10.0)))
    at = channel.out_dtype.fields["correlation_id"][1]
    ring_call = kernel.push_pop

    def answered_at_once(block: int, lane: int, data: bytes, max_count: int, spin: float) -> bytes:
        reply[at:at + 16] = data[:16]  # the message_id leads the request's header
        return bytes(reply)

    kernel.push_pop = answered_at_once
    try:
        best = float("inf")
        for _ in range(5):
            msgs = [make(i) for i in range(n)]
            start = time.thread_time()
            for m in msgs:
                await rt.request("echo", m, timeout=10.0)
            best = min(best, (time.thread_time() - start) / n)
        return best * 1e6
    finally:
        kernel.push_pop = ring_call


def echo_alone(pkg: Any, kernel_id: str) -> float:
    """bench_ring (a) on kernel `kernel_id`: what it moves of batched Job rows alone."""
    kernel = CpuKernel(pkg.package.kernel(kernel_id), lane_capacity=1024, out_capacity=4096)
    kernel.activate()
    try:
        ring_throughput(kernel, 50_000)  # warm up
        return ring_throughput(kernel, ARRAYS_N)
    finally:
        kernel.terminate()


async def arrays(rt: RingKernelRuntime, kernel_id: str, arr: np.ndarray) -> float:
    """(c): send_array of the rows in pieces while a task receive_array()s them."""
    start = time.perf_counter()

    async def drain() -> None:
        got = 0
        while got < len(arr):
            got += len(await rt.receive_array(kernel_id, 1 << 16, timeout=10.0))

    consumer = asyncio.ensure_future(drain())
    for i in range(0, len(arr), 1 << 16):
        await rt.send_array(kernel_id, arr[i:i + (1 << 16)])
    await consumer
    return len(arr) / (time.perf_counter() - start)


def target(ratio: float, goal: float) -> str:
    return f"target >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'}"


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
        seed, seed_done = pkg.WorkRequest, pkg.WorkResponse
        seed_msgs = [seed(data=[1.0, 2.0, 3.0]) for _ in range(ONE_AT_A_TIME_N)]
        seed_base = Baseline(seed, seed_done, lambda req: req.reply(seed_done, result=sum(req.data)))
        base_one = await one_at_a_time(seed_base.send, seed_base.receive, seed_msgs)
        seed_base.task.cancel()
        native = native_round_trip(pkg)
        one_kernels = ("work", "work_thread")
        ceilings = {k: kernel_alone(pkg, k, seed(data=[1.0, 2.0, 3.0]), ONE_AT_A_TIME_N)
                    for k in one_kernels}
        array_kernels = ("echo", "echo_thread")
        array_ceilings = {k: echo_alone(pkg, k) for k in array_kernels}

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
            ours_arr = {"echo": await arrays(rt, "echo", arr)}
            share = await host_share(rt, lambda i: job(seq=i), LATENCY_N)
            await rt.launch("echo_thread", queue_size=1 << 21)
            ours_arr["echo_thread"] = await arrays(rt, "echo_thread", arr)
            ours_one = {}
            for k in one_kernels:
                await rt.launch(k, queue_size=1 << 16)
                seed_msgs = [seed(data=[1.0, 2.0, 3.0]) for _ in range(ONE_AT_A_TIME_N)]
                ours_one[k] = await one_at_a_time(lambda m, k=k: rt.send(k, m),
                                                  lambda k=k: rt.receive(k, timeout=10.0), seed_msgs)
        base.task.cancel()

    p50_ratio = pct(base_lat, 50) / pct(ours_lat, 50)
    native_ratio = pct(ours_lat, 50) / pct(native, 50)
    print("(a) request() round trip, p50 / p99")
    print(f"    baseline (asyncio.PriorityQueue + msgpack): {pct(base_lat, 50):7.1f} / "
          f"{pct(base_lat, 99):7.1f} us")
    print(f"    ringgen CPU backend:                        {pct(ours_lat, 50):7.1f} / "
          f"{pct(ours_lat, 99):7.1f} us")
    print(f"    native round trip (bench_ring (b), polled): {pct(native, 50):7.1f} / "
          f"{pct(native, 99):7.1f} us")
    print(f"    p50 ratio (baseline / ringgen):             {p50_ratio:7.2f}x   {target(p50_ratio, 2)}")
    print(f"    p50 ringgen / native:                       {native_ratio:7.2f}x   "
          f"target <= 3x: {'met' if native_ratio <= 3 else 'NOT met'}")
    print("(b) send_many/receive_many, message objects")
    print(f"    baseline: {base_obj:12,.0f} msg/s   ringgen: {ours_obj:12,.0f} msg/s   "
          f"ratio {ours_obj / base_obj:5.1f}x   {target(ours_obj / base_obj, 10)}")
    print("(c) send_array/receive_array, numpy struct arrays (no object per message)")
    for k in array_kernels:
        rate, alone = ours_arr[k], array_ceilings[k]
        print(f"    kernel {k!r} ({KERNEL_KIND[k]})")
        print(f"      baseline: {base_obj:12,.0f} msg/s   ringgen: {rate:12,.0f} msg/s   "
              f"ratio {rate / base_obj:5.1f}x   {target(rate / base_obj, 50)}")
        print(f"      the kernel alone (bench_ring (a) on it): {alone:,.0f} msg/s;"
              f" ringgen reaches {rate / alone:.0%} of it")
    print(f"(d) {ONE_AT_A_TIME_N:,} seed WorkRequests, one send() and one receive() at a time")
    for k in one_kernels:
        rate, alone = ours_one[k], ceilings[k]
        print(f"    kernel {k!r} ({KERNEL_KIND[k]})")
        print(f"      baseline: {base_one:12,.0f} msg/s   ringgen: {rate:12,.0f} msg/s   "
              f"ratio {rate / base_one:5.1f}x   {target(rate / base_one, 3)}")
        print(f"      the kernel alone (struct rows, push_wait and a popping thread): "
              f"{alone:,.0f} msg/s; ringgen reaches {rate / alone:.0%} of it")
    print(f"(e) the host's share of a request (push_pop answered in-process): {share:.2f} us of CPU")


if __name__ == "__main__":
    asyncio.run(main())
