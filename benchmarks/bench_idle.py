"""What idle kernels cost: twenty CPU-backend runners of the example `worker` kernel, launched,
answered once each, then left idle; the CPU time their processes use over a few seconds, as a
share of one core (the run time of every thread, from /proc/<pid>/task/*/schedstat, in ns),
and the Python process's beside it.

    python benchmarks/bench_idle.py [KERNELS] [SECONDS]

The worker package is the generated/ of the checkout whose ringgen runs this script (so the
same script measures any version's runner).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import ringgen.runtime
from ringgen import RingKernelRuntime


def load_worker() -> Any:
    folder = Path(ringgen.runtime.__file__).resolve().parent.parent / "generated" / "worker"
    spec = importlib.util.spec_from_file_location(
        "bench_idle_worker", folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cpu_ns(pid: int) -> int:
    """Nanoseconds the process's threads have run (the first field of each schedstat)."""
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir())


async def main(kernels: int, seconds: float) -> None:
    pkg = load_worker()
    async with AsyncExitStack() as stack:
        pids = []
        for _ in range(kernels):
            rt = await stack.enter_async_context(RingKernelRuntime(pkg, backend="cpu"))
            await rt.launch("worker")
            await rt.request("worker", pkg.WorkRequest(data=[1.0]), timeout=30.0)
            pids.append(rt.channel("worker").kernel.proc.pid)  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)  # past every spin window and the naps' ramp
        before = [cpu_ns(p) for p in pids] + [cpu_ns(os.getpid())]
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        runners = sum(cpu_ns(p) for p in pids) - sum(before[:-1])
        host = cpu_ns(os.getpid()) - before[-1]
    print(f"{kernels} idle kernels over {elapsed:.1f} s: runners {100 * runners / 1e9 / elapsed:.3f}%"
          f" of a core, the Python process {100 * host / 1e9 / elapsed:.3f}%")


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:]]
    asyncio.run(main(int(args[0]) if args else 20, args[1] if len(args) > 1 else 5.0))
