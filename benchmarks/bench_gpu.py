"""On a GPU (needs pycuda and a device): a persistent ring kernel beside what a user would do
without ringgen — the same handler launched as an ordinary kernel per message (copy in, launch,
copy out, synchronize).

    python benchmarks/bench_gpu.py [--require-gpu]

Without a usable GPU it says why and exits 0 (so `make bench` runs on any machine), or 1 with
--require-gpu (scripts/gpu-check).

(a) round-trip latency p50/p99 of one message; (b) throughput in messages/s with batches.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ring import build_echo  # noqa: E402

from ringgen.runtime.backends import cuda  # noqa: E402

LATENCY_N = 5000
THROUGHPUT_N = 20_000_000
BATCH = 1 << 16

# The echo handler as an ordinary kernel: one thread block, one message, per launch.
ONCE_CU = r"""
#include "bench_kernels_messages.h"
extern "C" __global__ void echo_once(const Job* in, Done* out) {
    if (threadIdx.x == 0) {
        out->seq = in->seq;
        out->priority = in->priority;
        out->correlation_id = in->message_id;
    }
}
"""


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e6, q))


def launch_per_message(package_dir: Path, in_dtype: np.dtype, out_dtype: np.dtype) -> list[float]:
    from pycuda.compiler import SourceModule

    with cuda.current_context() as drv:
        module = SourceModule(ONCE_CU, no_extern_c=True, include_dirs=[str(package_dir)])
        fn = module.get_function("echo_once")
        job = drv.pagelocked_zeros(1, dtype=in_dtype)
        done = drv.pagelocked_zeros(1, dtype=out_dtype)
        d_in, d_out = drv.mem_alloc(in_dtype.itemsize), drv.mem_alloc(out_dtype.itemsize)
        stream = drv.Stream(flags=1)
        samples = []
        for i in range(LATENCY_N + 200):
            job["seq"] = i
            start = time.perf_counter()
            drv.memcpy_htod_async(d_in, job, stream)
            fn(d_in, d_out, block=(32, 1, 1), grid=(1, 1), stream=stream)
            drv.memcpy_dtoh_async(done, d_out, stream)
            stream.synchronize()
            samples.append(time.perf_counter() - start)
            assert done["seq"][0] == i
        return samples[200:]


def main() -> None:
    problem = cuda.probe()
    if problem is not None:
        print(f"bench_gpu skipped: it needs the cuda backend, and {problem}")
        sys.exit(1 if "--require-gpu" in sys.argv else 0)
    with tempfile.TemporaryDirectory() as tmp:
        pkg = build_echo(Path(tmp))
        info = pkg.package.kernel("echo")
        kernel = cuda.CudaKernel(info, lane_capacity=4096, out_capacity=1 << 16)
        kernel.activate()
        try:
            job = np.zeros(1, dtype=info.in_dtype)
            samples = []
            for i in range(LATENCY_N + 200):
                job["seq"] = i
                start = time.perf_counter()
                kernel.push(0, 2, job)
                got = kernel.pop(1, timeout=5.0)
                samples.append(time.perf_counter() - start)
                assert len(got) == 1 and got["seq"][0] == i
            ring = samples[200:]
            jobs = np.zeros(BATCH, dtype=info.in_dtype)
            jobs["priority"] = 128
            received = 0

            def consume() -> None:
                nonlocal received
                while received < THROUGHPUT_N:
                    received += len(kernel.pop(BATCH, timeout=10.0))

            consumer = threading.Thread(target=consume)
            start = time.perf_counter()
            consumer.start()
            for _ in range(THROUGHPUT_N // BATCH):
                kernel.push_wait(0, 2, jobs, timeout=30.0)
            consumer.join()
            throughput = received / (time.perf_counter() - start)
        finally:
            kernel.terminate()
        once = launch_per_message(pkg.package.path, info.in_dtype, info.out_dtype)
    print(f"device: {cuda.device_name()}")
    print("(a) round trip of one message, p50 / p99")
    print(f"    persistent ring kernel:      {pct(ring, 50):7.1f} / {pct(ring, 99):7.1f} us")
    print(f"    launch + sync per message:   {pct(once, 50):7.1f} / {pct(once, 99):7.1f} us")
    print(f"    p50 ratio (launch / ring):   {pct(once, 50) / pct(ring, 50):7.2f}x")
    print(f"(b) throughput with batches of {BATCH}: {throughput:,.0f} messages/s")


if __name__ == "__main__":
    main()
