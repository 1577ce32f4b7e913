"""mypy and the import-linter contracts (pyproject) over the package as Python imports it.

pyproject maps the top-level folders (schema/, codecs/, toolchain/, codegen/, runtime/, cluster/,
templates/) into ringgen.*, which
mypy cannot follow from the source tree; this lays the package out as installed (symbolic
links under .cache/typecheck/) and checks that, so every cross-module type is really checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("schema", "codecs", "toolchain", "codegen", "runtime", "templates", "cluster")


def package_tree(tree: Path) -> Path:
    """Lay the package out under `tree` as installed (symbolic links); returns tree/ringgen."""
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "ringgen"
    package.mkdir(parents=True)
    for item in (ROOT / "ringgen").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for name in MAPPED:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return package


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--tree-only":  # scripts/gpu-check uses this
        package_tree(Path(sys.argv[2]))
        return 0
    tree = ROOT / ".cache" / "typecheck"
    package = package_tree(tree)
    config = str(ROOT / "pyproject.toml")
    mypy = [sys.executable, "-m", "mypy", "--config-file", config, str(package)]
    # import-linter finds the packages as Python would: here, through the laid-out tree.
    layers = [str(Path(sys.executable).with_name("lint-imports")), "--config", config]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    failed = [subprocess.run(cmd, cwd=tree, env=env).returncode for cmd in (mypy, layers)]
    return max(failed)


if __name__ == "__main__":
    raise SystemExit(main())
