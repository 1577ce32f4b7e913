"""Every exception ringgen raises. Each message says what happened and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class RinggenError(Exception):
    """Base class of all ringgen errors."""


class SchemaError(RinggenError, TypeError):
    """A message schema that ringgen cannot use (or cannot lay out as a C struct)."""


class TranslationError(SchemaError):
    """A handler written in Python that uses constructs the translator cannot make C of.
    `diagnostics` lists each one (file, line, col, construct, what to write instead)."""

    def __init__(self, message: str, diagnostics: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)


class MessageSerializationError(RinggenError, ValueError):
    """Bytes that are not a valid encoding of the message they are decoded as."""


class QueueFullError(RinggenError):
    """A kernel's queue is full and its backpressure strategy refused the message. From a
    batch call (send_many, send_array), `accepted` holds the indices into the batch of the
    messages that were accepted before it (none with backpressure 'reject', which admits a
    batch whole or not at all): retry only the others, or they are sent twice."""

    def __init__(self, message: str, accepted: np.ndarray | None = None) -> None:
        super().__init__(message)
        self.accepted = accepted


class KernelFaultError(RinggenError):
    """A kernel crashed or failed; its pending requests fail with this error."""


class KernelStateError(RinggenError):
    """An operation that the kernel's lifecycle state does not allow."""


class StaleSchemaError(RinggenError, ImportError):
    """A generated package whose source schemas changed since it was built."""


class BackendUnavailableError(RinggenError):
    """The requested backend cannot run on this machine."""


class CompileError(RinggenError):
    """A generated or user-written source failed to compile. `command` is the compiler's
    command line and `output` what it printed (as CuPy's CompileException carries them)."""

    def __init__(self, message: str, command: list[str] | None = None, output: str = "") -> None:
        super().__init__(message)
        self.command = command or []
        self.output = output


class DeviceResourceError(CompileError):
    """A kernel that compiles but whose block cannot be resident on the GPU (static shared
    memory, threads or registers over sm_90's limits): refused at build, not at launch."""


class UntrustedCacheError(RinggenError):
    """A compile cache folder or artifact that another user owns or others can write: ringgen
    would run what it holds, so it refuses it."""


class ValidationError(RinggenError, ValueError):
    """A value ringgen cannot accept: a message field out of its type or bound, a launch
    parameter out of range. Also a ValueError, as Python's own validation errors are."""


__all__ = [
    "BackendUnavailableError",
    "CompileError",
    "KernelFaultError",
    "KernelStateError",
    "MessageSerializationError",
    "QueueFullError",
    "RinggenError",
    "SchemaError",
    "StaleSchemaError",
    "TranslationError",
    "UntrustedCacheError",
    "ValidationError",
]
