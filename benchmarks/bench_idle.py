"""What idle kernels cost: twenty CPU-backend runners of the example `worker` kernel, launched,
answered once each, then left idle; the CPU time their processes use over a few seconds, as a
share of one core (utime + stime from /proc/<pid>/stat), and the Python process's beside it.

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

TICKS = os.sysconf("SC_CLK_TCK")


def load_worker() -> Any:
    folder = Path(ringgen.runtime.__file__).resolve().parent.parent / "generated" / "worker"
    spec = importlib.util.spec_from_file_location(
        "bench_idle_worker", folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


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
        before = [cpu_ticks(p) for p in pids]
        host_before = os.times()
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        runners = sum(cpu_ticks(p) for p in pids) - sum(before)
        host_after = os.times()
        host = (host_after.user + host_after.system) - (host_before.user + host_before.system)
    print(f"{kernels} idle kernels over {elapsed:.1f} s: runners {100 * runners / TICKS / elapsed:.2f}%"
          f" of a core, Python process {100 * host / elapsed:.2f}%")


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:]]
    asyncio.run(main(int(args[0]) if args else 20, args[1] if len(args) > 1 else 5.0))
