"""The main job: import every generated example package and show what it declares."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    sys.path.insert(0, str(ROOT))
    packages = sorted(p.name for p in (ROOT / "generated").iterdir() if (p / "__init__.py").exists())
    for name in packages:
        pkg = importlib.import_module(f"generated.{name}")
        print(f"== generated/{name} (schema {pkg.SCHEMA_HASH})")
        for msg, dtype in pkg.DTYPES.items():
            print(f"   message {msg}: {dtype.itemsize} bytes, type id {pkg.TYPE_IDS[msg]:#010x}")
        for kernel, info in pkg.KERNELS.items():
            print(f"   kernel {kernel}: {info['input']} -> {info['output']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
