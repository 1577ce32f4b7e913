"""ringgen: typed messages in, typed messages out, through persistent GPU actor kernels."""

from __future__ import annotations

from ringgen._version import __version__
from ringgen.errors import (
    BackendUnavailableError,
    KernelFaultError,
    KernelStateError,
    MessageSerializationError,
    QueueFullError,
    SchemaError,
    StaleSchemaError,
)
from ringgen.runtime.buffers import BufferState, UnifiedBuffer
from ringgen.runtime.runtime import DeadLetter, KernelState, RingKernelRuntime
from ringgen.schema.kernels import ring_kernel
from ringgen.schema.messages import Message, message
from ringgen.schema.types import BufferRef, MaxLen

__all__ = [
    "BackendUnavailableError",
    "BufferRef",
    "BufferState",
    "DeadLetter",
    "KernelFaultError",
    "KernelState",
    "KernelStateError",
    "MaxLen",
    "Message",
    "MessageSerializationError",
    "QueueFullError",
    "RingKernelRuntime",
    "SchemaError",
    "StaleSchemaError",
    "UnifiedBuffer",
    "__version__",
    "message",
    "ring_kernel",
]
