"""The GPU data path as the bus meter sees it (DESIGN "The data path on a GPU"), on the CPU
backend, today's batched copies of the used bytes beside the path before them (the
`bus-baseline` runner build: one request per round, the whole slot copied by thread 0 in 8-byte
loads), in one run.

Per message: the bus transactions (of up to 128 bytes) and bytes a GPU would send for the
device side's accesses to host memory, reads (requests, and the host's indices) and writes
(responses, the kernel's indices and counters) apart, for the worker
example (3 floats, 256 floats), an axpy-like kernel at thread granularity and a 4 KB message.
Then CPU throughput of the axpy kernel at thread granularity against block granularity: of
the kernel alone (a fire-and-forget variant, timed until it has processed every request) and
with the responses the host receives.

    python benchmarks/bench_bus.py   # RINGGEN_BENCH_BUS_N=4096 messages a case,
                                     # RINGGEN_BENCH_BUS_THROUGHPUT_N=200000 for throughput

The meter does not count polls that found no work (rg_bus.h), and a GPU's figures are its
prediction: no GPU run backs them yet.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ringgen import RingKernelRuntime  # noqa: E402
from ringgen.codegen.build import plan  # noqa: E402
from ringgen.codegen.kernels import batch_size  # noqa: E402
from ringgen.codegen.writer import write_package  # noqa: E402
from ringgen.runtime.backends.cpu import CpuKernel  # noqa: E402

N = int(os.environ.get("RINGGEN_BENCH_BUS_N", "4096"))
THROUGHPUT_N = int(os.environ.get("RINGGEN_BENCH_BUS_THROUGHPUT_N", "200000"))
# Runs of each fire-and-forget kernel, the fastest kept: a per=thread run lasts a few tens of
# milliseconds, where one time slice lost to another process would skew the ratio.
SINK_RUNS = 3
HEADER = 40  # bytes of the common header


def load(package_dir: Path, alias: str) -> Any:
    spec = importlib.util.spec_from_file_location(alias, package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def build(work: Path) -> tuple[Any, Any]:
    p = plan([str(HERE / "bench_bus_kernels.py")], work / "gen")
    write_package(p.package_dir, p.files())
    return load(p.package_dir, "bench_bus_gen"), load(ROOT / "generated" / "worker", "bench_bus_worker")


@dataclass
class Figures:
    reads: float         # transactions per message
    read_bytes: float
    writes: float
    write_bytes: float
    seconds: float       # from activate to the last response


async def run_case(pkg: Any, kernel_id: str, rows: np.ndarray) -> Figures:
    n = len(rows)
    capacity = 1 << max(6, (n - 1).bit_length())
    async with RingKernelRuntime(pkg, backend="cpu") as rt:
        # Every request waits in the lanes before the kernel starts: full batches.
        await rt.launch(kernel_id, activate=False, lane_capacity=capacity, queue_size=capacity)
        await rt.send_array(kernel_id, rows)
        start = time.perf_counter()
        await rt.activate(kernel_id)
        got = 0
        while got < n:
            got += len(await rt.receive_array(kernel_id, n, timeout=30.0))
        seconds = time.perf_counter() - start
        t = rt.telemetry(kernel_id)
        assert t.processed == n, (kernel_id, t)
        return Figures(t.bus_reads / n, t.bus_read_bytes / n, t.bus_writes / n,
                       t.bus_write_bytes / n, seconds)


def measure(pkg: Any, kernel_id: str, rows: np.ndarray, baseline: bool) -> Figures:
    if baseline:
        os.environ["RINGGEN_BUS_BASELINE"] = "1"
    try:
        return asyncio.run(run_case(pkg, kernel_id, rows))
    finally:
        os.environ.pop("RINGGEN_BUS_BASELINE", None)


def worker_rows(worker: Any, floats: int) -> np.ndarray:
    rows = worker.new_array("WorkRequest", N)
    rows["data"]["count"] = floats
    rows["data"]["items"][:, :floats] = np.arange(floats, dtype=np.float64)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ringgen-bench-bus-") as tmp:
        gen, worker = build(Path(tmp))
        axpy = gen.new_array("Axpy", N)
        axpy["a"], axpy["x"], axpy["y"] = 2.0, np.arange(N), 1.0
        blob = gen.new_array("Blob", N)
        blob["data"]["len"] = 4096
        blob["data"]["data"][:] = 7
        # (name, package, kernel, rows, bytes a request uses: header, counts and lengths,
        # the items and characters it holds, the scalars)
        cases = [
            ("worker, 3 floats", worker, "worker", worker_rows(worker, 3), HEADER + 8 + 24 + 4 + 3),
            ("worker, 256 floats", worker, "worker", worker_rows(worker, 256),
             HEADER + 8 + 2048 + 4 + 3),
            ("axpy, per=thread", gen, "axpy_thread", axpy, HEADER + 24),
            ("4 KB message", gen, "blob", blob, HEADER + 4 + 4096),
        ]
        print(f"bus meter, per message, {N} messages a case, every request waiting at activation;"
              " before -> after")
        print(f"{'case':<19} {'batch':>5} {'reads':>13} {'read bytes':>15} {'of before':>9} "
              f"{'target':>6} {'writes':>12} {'write bytes':>12}")
        for name, pkg, kid, rows, used_in in cases:
            before = measure(pkg, kid, rows, baseline=True)
            after = measure(pkg, kid, rows, baseline=False)
            k = pkg.package.kernels[kid]
            batch = batch_size(k.spec, k.in_dtype.itemsize + k.out_dtype.itemsize)
            target = math.ceil(used_in / 128) + 1  # read transactions per request, at most
            print(f"{name:<19} {batch:>5} {before.reads:>6.1f} {after.reads:>6.2f} "
                  f"{before.read_bytes:>7.0f} {after.read_bytes:>7.0f} "
                  f"{after.read_bytes / before.read_bytes:>9.1%} {target:>6} "
                  f"{before.writes:>5.1f} {after.writes:>6.2f} {before.write_bytes:>5.0f} "
                  f"{after.write_bytes:>6.0f}")
        many = gen.new_array("Axpy", THROUGHPUT_N)
        many["a"], many["x"], many["y"] = 2.0, np.arange(THROUGHPUT_N), 1.0
        rates = {}
        for kid in ("sink_block", "sink_thread", "axpy_block", "axpy_thread"):
            seconds = (min(run_sink(gen, kid, many) for _ in range(SINK_RUNS)) if kid.startswith("sink")
                       else asyncio.run(run_case(gen, kid, many)).seconds)
            rates[kid] = THROUGHPUT_N / seconds
        print(f"\nCPU throughput of axpy, {THROUGHPUT_N} messages waiting at activation:")
        for what, kid in (("the kernel alone (fire-and-forget, 128 threads, per=thread batches of "
                           f"128, per=block of 32; the best of {SINK_RUNS} runs)", "sink"),
                          ("with responses the host receives (32 threads, batches of 32)", "axpy")):
            thread, block = rates[f"{kid}_thread"], rates[f"{kid}_block"]
            print(f"  {what}: per=thread {thread / 1e6:.2f} M msg/s, per=block "
                  f"{block / 1e6:.2f} M msg/s: {thread / block:.1f}x")


def run_sink(pkg: Any, kernel_id: str, rows: np.ndarray) -> float:
    """A fire-and-forget kernel's own time from activation to its last request processed, its
    lane filled beforehand through the native ring (no event loop feeding it meanwhile)."""
    n = len(rows)
    rows = rows.copy()
    rows["priority"] = 128
    kernel = CpuKernel(pkg.package.kernel(kernel_id), lane_capacity=1 << (n - 1).bit_length())
    try:
        assert kernel.push(0, 2, rows) == n
        start = time.perf_counter()
        kernel.activate()
        while kernel.status()[0].processed < n:
            time.sleep(0.0002)
        return time.perf_counter() - start
    finally:
        kernel.stop()

if __name__ == "__main__":
    main()
