"""ringgen: typed messages in, typed messages out, through persistent GPU actor kernels."""

from __future__ import annotations

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
from ringgen.runtime.kernels import ring_kernel
from ringgen.runtime.messages import Message, message
from ringgen.runtime.runtime import DeadLetter, KernelState, RingKernelRuntime
from ringgen.runtime.types import BufferRef, MaxLen

__version__ = "0.1.0"

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
