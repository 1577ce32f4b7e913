"""UnifiedBuffer: large data shared by the host and the kernels, referenced from messages by a
BufferRef instead of being copied into them.

The memory is an anonymous memory file on the CPU backend (mapped by the host and, on first use,
by each kernel's runner, which unmaps it once the buffer leaves the kernel's table) and managed
memory on CUDA, allocated in the context of the buffer's `device` (kernels on other GPUs of the
machine reach managed memory too, paging it across; the CPU backend's device numbers share
the host's memory).

Buffer ids are random 64-bit numbers: a kernel finds only the buffers registered with its own
runtime (its table), and a reference cannot be guessed from another one. A kernel resolves a reference with
`ctx.buffer(ref)`: pointer, size and numpy type character.

State is kept true by the runtime: the host's writes are published (host dirty ->
synchronized) before a message that references the buffer is enqueued, and a response to such a
message marks the buffer device dirty until the host next looks (`.host`), which synchronizes.
"""

from __future__ import annotations

import enum
import os
import secrets
import threading
import weakref
from typing import Any

import numpy as np

from ringgen.errors import BackendUnavailableError, ValidationError
from ringgen.runtime import limits
from ringgen.runtime.shm import path_of, shared_memory
from ringgen.schema.types import BufferRef

_registry: weakref.WeakValueDictionary[int, UnifiedBuffer] = weakref.WeakValueDictionary()
_lock = threading.Lock()


class BufferState(enum.Enum):
    HOST_DIRTY = "host dirty"          # the host wrote; kernels may not see it yet
    DEVICE_DIRTY = "device dirty"      # a kernel may have written; the host must synchronize
    SYNCHRONIZED = "synchronized"


def _fence() -> None:
    """A full memory barrier between this process and the kernels (a lock round trip is one;
    numpy and Python give no other portable way)."""
    with _lock:
        pass


class UnifiedBuffer:
    """An array that both the host (`.host`) and the kernels (`ctx.buffer(ref)`) address."""

    def __init__(self, shape: int | tuple[int, ...], dtype: Any = np.float64,
                 backend: str = "cpu", device: int = 0) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if self.nbytes <= 0:
            raise ValueError("a UnifiedBuffer needs at least one element")
        if backend not in ("cpu", "cuda"):
            raise ValueError(f"backend must be 'cpu' or 'cuda', not {backend!r}")
        self.backend = backend
        self.device = limits.device(device)
        with _lock:
            self.buffer_id = _new_id()
            _registry[self.buffer_id] = self
        self.path = ""
        self.device_ptr = 0
        self._array = self._shared_memory() if backend == "cpu" else self._managed()
        self.state = BufferState.SYNCHRONIZED

    @staticmethod
    def of(ref: BufferRef | int) -> UnifiedBuffer:
        """The live buffer a message's BufferRef names (what a kernel's Python function uses
        where its CUDA handler calls ctx.buffer(ref))."""
        return lookup(ref)

    def _shared_memory(self) -> np.ndarray:
        # The descriptor stays open while the buffer lives: runners open it by its /proc path
        # when a handler first uses the buffer.
        fd, self._map = shared_memory("ringgen-buffer", self.nbytes)
        weakref.finalize(self, os.close, fd)
        self.path = path_of(fd)
        return np.frombuffer(self._map, dtype=self.dtype).reshape(self.shape)

    def _managed(self) -> np.ndarray:
        from ringgen.runtime.backends import cuda

        with cuda.current_context(self.device) as drv:
            free, _ = drv.mem_get_info()
            if self.nbytes > free:
                raise BackendUnavailableError(
                    f"a UnifiedBuffer of {self.nbytes} bytes does not fit the {free} bytes the "
                    "GPU has free; asking for more managed memory than that can hang the GPU")
            array = drv.managed_empty(self.shape, self.dtype,
                                      mem_flags=drv.mem_attach_flags.GLOBAL)
            self.device_ptr = int(array.base.get_device_pointer())
        return array

    @property
    def ref(self) -> BufferRef:
        """What a message carries to name this buffer."""
        return BufferRef(self.buffer_id)

    @property
    def host(self) -> np.ndarray:
        """The host's view. Looking synchronizes what kernels wrote; the host may write, so the
        buffer is host dirty until the next message that references it is enqueued."""
        if self.state is BufferState.DEVICE_DIRTY:
            _fence()
        self.state = BufferState.HOST_DIRTY
        return self._array

    def to_device(self) -> None:
        """Publish the host's writes (the runtime calls it before enqueuing a reference)."""
        if self.state is BufferState.HOST_DIRTY:
            _fence()
            self.state = BufferState.SYNCHRONIZED

    def device_wrote(self) -> None:
        """A kernel answered a message that referenced the buffer."""
        self.state = BufferState.DEVICE_DIRTY

    def entry(self) -> tuple[int, int, int, int, int, str]:
        """(id, device pointer, bytes, numpy type character, item size, path) for the tables
        of the kernels' regions."""
        return (self.buffer_id, self.device_ptr, self.nbytes, ord(self.dtype.char),
                self.dtype.itemsize, self.path)


def _new_id() -> int:
    """A random nonzero id no live buffer has (0 marks a free table entry); under _lock."""
    while True:
        candidate = secrets.randbits(64)
        if candidate and candidate not in _registry:
            return candidate


def lookup(ref: BufferRef | int) -> UnifiedBuffer:
    """The live buffer a reference names (for Python reference semantics of a kernel)."""
    key = ref.buffer_id if isinstance(ref, BufferRef) else ref
    try:
        return _registry[key]
    except KeyError:
        raise ValidationError(f"no live UnifiedBuffer with id {key}: the buffer was freed or "
                              "never made; reference a buffer that is still alive") from None
