"""The ring protocol on the CPU backend, beside a Python thread echoing through queue.Queue.

(a) throughput of one 32-thread kernel whose handler has no barrier, batched push and pop;
(b) round-trip latency p50/p99 of one message at a time, polled for as a lone request() polls
    (the native reference of bench_runtime (a)) and with a pop that sleeps at once;
(c) the cost of one __syncthreads() of a 32-thread block (fibers switched in user space).

    python benchmarks/bench_ring.py
"""

from __future__ import annotations

import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ringgen.codegen.build import plan  # noqa: E402
from ringgen.codegen.writer import write_package  # noqa: E402
from ringgen.runtime.backends.cpu import CpuKernel  # noqa: E402
from ringgen.runtime.device_channel import REQUEST_SPIN_S  # noqa: E402
from ringgen.toolchain.compile import cccl_include, cxx, templates_dir  # noqa: E402

THROUGHPUT_N = 2_000_000
BASELINE_N = 200_000
LATENCY_N = 3000


def build_echo(work: Path) -> Any:
    import importlib.util

    p = plan([str(HERE / "bench_kernels.py")], work / "gen")
    write_package(p.package_dir, p.files())
    spec = importlib.util.spec_from_file_location("bench_gen", p.package_dir / "__init__.py",
                                                  submodule_search_locations=[str(p.package_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gen"] = module
    spec.loader.exec_module(module)
    return module


def ring_throughput(kernel: CpuKernel, n: int) -> float:
    jobs = np.zeros(n, dtype=kernel.info.in_dtype)
    jobs["seq"] = np.arange(n)
    jobs["priority"] = 128
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            received += len(kernel.pop(4096, timeout=5.0))

    consumer = threading.Thread(target=consume)
    start = time.perf_counter()
    consumer.start()
    assert kernel.push_wait(0, 2, jobs, timeout=60.0) == n
    consumer.join()
    elapsed = time.perf_counter() - start
    assert received == n
    return n / elapsed


def queue_echo() -> tuple[queue.Queue[Any], queue.Queue[Any], threading.Thread]:
    inbox: queue.Queue[Any] = queue.Queue()
    outbox: queue.Queue[Any] = queue.Queue()

    def echo() -> None:
        while True:
            item = inbox.get()
            outbox.put(item)
            if item is None:
                return

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    return inbox, outbox, thread


def queue_throughput(n: int) -> float:
    inbox, outbox, thread = queue_echo()
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            outbox.get()
            received += 1

    consumer = threading.Thread(target=consume)
    start = time.perf_counter()
    consumer.start()
    for i in range(n):
        inbox.put((i, 128))
    consumer.join()
    elapsed = time.perf_counter() - start
    inbox.put(None)
    thread.join()
    return n / elapsed


def ring_latency(kernel: CpuKernel, n: int, spin_s: float = 0.0) -> list[float]:
    """Round trips of one struct at a time, bytes in and out (no numpy, no Python message).
    spin_s > 0: as a lone request() waits, push and a pop polling up to spin_s in one native
    call (push_pop), then a sleeping pop; spin_s = 0: push, then a pop that sleeps on the
    kernel's bell at once (the futex wake-up is then part of every round trip)."""
    job = np.zeros(1, dtype=kernel.info.in_dtype)
    samples = []
    for i in range(n):
        job["seq"] = i
        data = job.tobytes()
        start = time.perf_counter()
        if spin_s > 0:
            got = kernel.push_pop(0, 2, data, 1, spin_s)
        else:
            kernel.push(0, 2, data)
            got = b""
        while not got:
            got = kernel.pop_bytes(1, timeout=5.0)
        samples.append(time.perf_counter() - start)
        assert np.frombuffer(got, dtype=kernel.info.out_dtype)["seq"][0] == i
    return samples


def queue_latency(n: int) -> list[float]:
    inbox, outbox, thread = queue_echo()
    samples = []
    for i in range(n):
        start = time.perf_counter()
        inbox.put((i, 128))
        outbox.get()
        samples.append(time.perf_counter() - start)
    inbox.put(None)
    thread.join()
    return samples


def syncthreads_ns(package_dir: Path, work: Path) -> dict[int, float]:
    binary = work / "syncthreads"
    subprocess.run([cxx(), "-std=c++17", "-O2", "-pthread", f"-I{package_dir}", f"-I{cccl_include()}",
                    str(HERE / "native" / "syncthreads.cpp"), str(templates_dir() / "rg_cpu_runtime.cpp"),
                    "-o", str(binary)], check=True)
    return {t: min(float(subprocess.run([str(binary), str(t)], capture_output=True, text=True,
                                        check=True).stdout) for _ in range(3)) for t in (32, 128)}


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e6, q))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pkg = build_echo(work)
        kernel = CpuKernel(pkg.package.kernel("echo"), lane_capacity=1024, out_capacity=4096)
        kernel.activate()
        try:
            ring_throughput(kernel, 50_000)  # warm up
            ours = statistics.median(ring_throughput(kernel, THROUGHPUT_N) for _ in range(3))
            base = statistics.median(queue_throughput(BASELINE_N) for _ in range(3))
            spun = ring_latency(kernel, LATENCY_N, REQUEST_SPIN_S)
            slept = ring_latency(kernel, LATENCY_N)
            queue_lat = queue_latency(LATENCY_N)
        finally:
            kernel.terminate()
        barrier = syncthreads_ns(pkg.package.path, work)

    print("(a) throughput, one 32-thread kernel, batched push/pop")
    print(f"    ringgen CPU backend:          {ours:12,.0f} messages/s")
    print(f"    baseline queue.Queue thread:  {base:12,.0f} messages/s")
    print(f"    ratio:                        {ours / base:12.1f}x")
    print("(b) round-trip latency, one message at a time (p50 / p99)")
    print(f"    ringgen CPU backend, polled:  {pct(spun, 50):7.1f} / {pct(spun, 99):7.1f} us"
          f"   (push_pop, as a lone request() waits, up to {REQUEST_SPIN_S * 1e6:g} us)")
    print(f"    ringgen CPU backend, slept:   {pct(slept, 50):7.1f} / {pct(slept, 99):7.1f} us"
          "   (a pop that sleeps on the kernel's bell at once)")
    print(f"    baseline queue.Queue thread:  {pct(queue_lat, 50):7.1f} / {pct(queue_lat, 99):7.1f} us")
    print(f"    p50 ratio (baseline/polled):  {pct(queue_lat, 50) / pct(spun, 50):7.2f}x")
    print("(c) one __syncthreads() on the CPU backend")
    for threads, ns in barrier.items():
        print(f"    {threads:3d} threads: {ns:8.1f} ns per barrier ({ns / threads:.1f} ns per fiber switch)")


if __name__ == "__main__":
    main()
