"""Shared-memory files: what the CPU backend's rings and UnifiedBuffers live in, mapped by the
Python process and by the kernels' runner processes."""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path


def shared_file(prefix: str, size: int) -> tuple[str, mmap.mmap]:
    """A new file of `size` zero bytes in /dev/shm (the temporary folder where there is none),
    and a shared mapping of it. The caller unlinks it when no new process needs to open it."""
    shm = Path("/dev/shm")
    folder = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        os.ftruncate(fd, size)
        return path, mmap.mmap(fd, size)
    finally:
        os.close(fd)
