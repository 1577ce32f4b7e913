"""Import a user's module by dotted name or by file path, the same way every time.

A file is imported under a name made from its stem (`examples/worker.py` -> `worker`), so that
message qualified names, and the type ids hashed from them, do not depend on where it was loaded
from. It is registered in sys.modules under that stem only where a plain `import worker` would
find this very file anyway; otherwise under a private name that no import statement can spell
(`ringgen-user:worker`), so that a user file named like another module (statistics.py) never
makes a later `import statistics` return it. public_name() maps the private name back to the
stem for qualified names.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


def is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def load_module(spec: str, base: Path | None = None) -> ModuleType:
    """`spec` is a dotted module name or a .py path (relative to `base`, else the cwd)."""
    if not is_path(spec):
        try:
            return importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise ImportError(f"cannot import module {spec!r} ({e}); pass a .py path or put its "
                              "folder on PYTHONPATH") from None
    path = Path(spec) if base is None else base / spec
    path = path.resolve()
    if not path.is_file():
        raise ImportError(f"no such module file: {path}")
    name = module_name(path)
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) and Path(loaded.__file__ or "").resolve() == path:
            return loaded
        raise ImportError(
            f"cannot import {path} as module {public_name(name)!r}: another module of that name "
            f"is already loaded ({getattr(loaded, '__file__', None) or 'built in'}); rename the file"
        )
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


PRIVATE_PREFIX = "ringgen-user:"


def module_name(path: Path) -> str:
    """The sys.modules name of the module file at `path` (absolute, resolved)."""
    stem = path.stem
    if stem.isidentifier():  # a dotted stem would make find_spec import a parent package
        try:
            found = importlib.util.find_spec(stem)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin and Path(found.origin).resolve() == path:
            return stem
    return PRIVATE_PREFIX + stem


def public_name(module: str) -> str:
    """A module's name as qualified names show it: a user file's stem, whatever it is
    registered under."""
    return module.removeprefix(PRIVATE_PREFIX)
