"""Codegen speed: a synthetic module of 200 messages built (no compiler run), then built again
with nothing changed, which must do no work; beside it, as a baseline, the same module only
imported and laid out (what every build has to do at least).

    python benchmarks/bench_codegen.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ringgen.codegen.build import build, plan

FIELDS = [
    "a: int = 0",
    "b: float = 0.0",
    "c: Annotated[str, MaxLen(24)] = ''",
    "d: Annotated[list[np.float32], MaxLen(16)] = field(default_factory=list)",
    "e: UUID | None = None",
    "f: bool = False",
]


def synthetic_module(path: Path, n: int = 200) -> None:
    lines = ["from dataclasses import dataclass, field", "from typing import Annotated",
             "from uuid import UUID", "import numpy as np", "from ringgen import MaxLen, message"]
    for i in range(n):
        lines += ["@message", "@dataclass", f"class Message{i:03d}:"]
        lines += [f"    {f}" for f in FIELDS]
        if i:
            lines.append(f"    previous: Message{i - 1:03d} | None = None" if i % 10 else "")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "synthetic200.py"
        synthetic_module(module)
        sys.path.insert(0, tmp)
        start = time.perf_counter()
        first = build([str(module)], Path(tmp) / "gen")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = build([str(module)], Path(tmp) / "gen")
        warm = time.perf_counter() - start
        start = time.perf_counter()
        plan([str(module)], Path(tmp) / "gen")
        layout_only = time.perf_counter() - start
    pkg = first.plan.schema.package
    print(f"first build:  {cold:6.2f} s for {len(pkg.messages)} messages, {len(pkg.structs)} structs, "
          f"{len(first.changed)} files written")
    print(f"second build: {warm:6.2f} s, {len(again.changed)} files written, skipped: {again.skipped}")
    print(f"baseline (read and lay out only, no rendering): {layout_only:6.2f} s; "
          f"second build / baseline: {warm / layout_only:.2f}x")


if __name__ == "__main__":
    main()
