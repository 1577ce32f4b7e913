"""The main job: run every bundled example (built into generated/) on the best backend.

    python scripts/run_examples.py [--backend auto|cpu|cuda] [EXAMPLE...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ringgen import RingKernelRuntime  # noqa: E402

ORDER = ["worker", "calculator", "logger", "pubsub", "pipeline", "sensors", "errors", "large_data",
         "cluster_pipeline"]  # after pipeline, whose kernels it places on two Ray nodes


async def run(name: str, backend: str) -> None:
    pkg = importlib.import_module(f"generated.{name}")
    module = pkg.package.modules[0]
    start = time.perf_counter()
    async with RingKernelRuntime(pkg, backend=backend) as runtime:
        print(f"== {name}: {(module.__doc__ or '').strip().splitlines()[0]}  [{runtime.backend}]")
        await module.demo(runtime)
    print(f"   ({time.perf_counter() - start:.2f} s, shutdown included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("examples", nargs="*", default=ORDER)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="   %(levelname)s %(name)s: %(message)s")
    for name in args.examples:
        asyncio.run(run(name, args.backend))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
