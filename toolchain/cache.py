"""The compile cache: compiled artifacts keyed by a hash of source, flags and compiler version,
in a per-user folder ($RINGGEN_CACHE_DIR, else $XDG_CACHE_HOME/ringgen, else ~/.cache/ringgen).
Entries are written atomically, so concurrent builds of the same key are safe."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ringgen.toolchain.files import atomic_write


def cache_dir() -> Path:
    env = os.environ.get("RINGGEN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ringgen"


@functools.cache
def compiler_version(compiler: str) -> str:
    """The compiler's own version text: a new compiler is a new cache key."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"
    return out.stdout.strip()


def cache_key(sources: Sequence[bytes], flags: Sequence[str], compiler: str) -> str:
    h = hashlib.sha256()
    for part in (*sources, "\0".join(flags).encode(), compiler_version(compiler).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def cached(key: str, suffix: str, produce: Callable[[Path], None]) -> tuple[Path, bool]:
    """The cached artifact for `key`, made by `produce(path)` on a miss; (path, was_hit)."""
    target = cache_dir() / key[:2] / f"{key}{suffix}"
    if target.exists():
        return target, True
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.build")
    try:
        produce(scratch)
        atomic_write(target, scratch.read_bytes())
        os.chmod(target, 0o755)
    finally:
        scratch.unlink(missing_ok=True)
    return target, False
