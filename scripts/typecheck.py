"""mypy over the package as Python imports it.

pyproject maps the top-level folders codegen/, runtime/ and templates/ into ringgen.*, which
mypy cannot follow from the source tree; this lays the package out as installed (symbolic
links under .cache/typecheck/) and checks that, so every cross-module type is really checked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"codegen": "codegen", "runtime": "runtime", "templates": "templates"}


def main() -> int:
    tree = ROOT / ".cache" / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "ringgen"
    package.mkdir(parents=True)
    for item in (ROOT / "ringgen").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for name, folder in MAPPED.items():
        (package / name).symlink_to(ROOT / folder, target_is_directory=True)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(package)]
    return subprocess.run(cmd, cwd=tree).returncode


if __name__ == "__main__":
    raise SystemExit(main())
