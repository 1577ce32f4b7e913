"""Shared memory: what the CPU backend's rings and UnifiedBuffers live in, mapped by the Python
process and by the kernels' runner processes.

Anonymous memory files (memfd), never files in /dev/shm: the memory lives exactly as long as
some process holds the file or a mapping of it, so a Python process killed at any point
(SIGKILL included) leaves nothing behind. A runner reaches the file through an inherited
descriptor (its region) or through /proc/<host pid>/fd/<n> (a UnifiedBuffer, mapped lazily).
"""

from __future__ import annotations

import mmap
import os


def shared_memory(name: str, size: int) -> tuple[int, mmap.mmap]:
    """A new anonymous memory file of `size` zero bytes (close-on-exec) and a shared mapping of
    it; the caller closes the descriptor once no other process needs to open the file."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


def path_of(fd: int) -> str:
    """A path by which another process of this user opens descriptor `fd` of this process."""
    return f"/proc/{os.getpid()}/fd/{fd}"
