"""A generated package's C codecs, compiled into a host module (templates/rg_codec_module.cpp):
what lets a message become its ring slot, and a slot its message, in one native call each
(codecs/structs.py, NativeSlots). Built into the compile cache on first use per package, like
the kernels' runners; RINGGEN_NATIVE_CODECS=0 keeps the pure-Python struct codec (for A/B
measurements and as a way out)."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from ringgen.codecs.structs import NativeSlots
from ringgen.toolchain.compile import CODEC_MODULE, compile_codec_module


def enabled() -> bool:
    return os.environ.get("RINGGEN_NATIVE_CODECS", "1") != "0"


@functools.cache
def _module(package_dir: Path) -> Any:
    artifact = compile_codec_module(package_dir)
    if artifact is None:
        return None
    path = str(artifact.path)
    loader = importlib.machinery.ExtensionFileLoader(CODEC_MODULE, path)
    spec = importlib.util.spec_from_file_location(CODEC_MODULE, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def slots_of(package_dir: Path, cls: Any, dtype: np.dtype | None) -> NativeSlots | None:
    """The native codec of `cls`'s C struct in the package at `package_dir`; None where there is
    none (switched off, no codec header, or a struct size that disagrees with `dtype`, which
    would mean the header and the package's dtypes come from different builds)."""
    if not enabled() or dtype is None:
        return None
    module = _module(package_dir.resolve())
    if module is None:
        return None
    for index, (name, size) in enumerate(module.layout()):
        if name == cls.__name__:
            return NativeSlots(module, index) if size == dtype.itemsize else None
    return None
