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


def package_tree(tree: Path) -> Path:
    """Lay the package out under `tree` as installed (symbolic links); returns tree/ringgen."""
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "ringgen"
    package.mkdir(parents=True)
    for item in (ROOT / "ringgen").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for name, folder in MAPPED.items():
        (package / name).symlink_to(ROOT / folder, target_is_directory=True)
    return package


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--tree-only":  # scripts/gpu-check uses this
        package_tree(Path(sys.argv[2]))
        return 0
    tree = ROOT / ".cache" / "typecheck"
    package = package_tree(tree)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(package)]
    return subprocess.run(cmd, cwd=tree).returncode


if __name__ == "__main__":
    raise SystemExit(main())
