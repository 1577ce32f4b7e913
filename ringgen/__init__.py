"""ringgen: typed messages in, typed messages out, through persistent GPU actor kernels.

Everything a user needs is importable from here; the subpackages (ringgen.schema, .codecs,
.codegen, .runtime, .toolchain) are the implementation and may change between versions.
"""

from __future__ import annotations

from ringgen._version import __version__
from ringgen.errors import (
    BackendUnavailableError,
    CompileError,
    DeviceResourceError,
    KernelFaultError,
    KernelStateError,
    MessageSerializationError,
    QueueFullError,
    RinggenError,
    SchemaError,
    StaleSchemaError,
    TranslationError,
    UntrustedCacheError,
    ValidationError,
)
from ringgen.runtime.actors import ActorContext
from ringgen.runtime.buffers import BufferState, UnifiedBuffer
from ringgen.runtime.channels import KernelState
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason
from ringgen.runtime.events import Event, EventKind
from ringgen.runtime.keys import key_hash
from ringgen.runtime.metrics import MetricsCollector
from ringgen.runtime.runtime import RingKernelRuntime
from ringgen.runtime.sync import SyncRuntime
from ringgen.runtime.telemetry import Telemetry
from ringgen.schema.header import FLAG_REDELIVERED
from ringgen.schema.kernels import prange, ring_kernel
from ringgen.schema.messages import Message, message
from ringgen.schema.types import BufferRef, MaxLen

__all__ = [
    "FLAG_REDELIVERED",
    "ActorContext",
    "BackendUnavailableError",
    "BufferRef",
    "BufferState",
    "CompileError",
    "DeadLetter",
    "DeadLetterReason",
    "DeviceResourceError",
    "Event",
    "EventKind",
    "KernelFaultError",
    "KernelState",
    "KernelStateError",
    "MaxLen",
    "Message",
    "MessageSerializationError",
    "MetricsCollector",
    "QueueFullError",
    "RingKernelRuntime",
    "RinggenError",
    "SchemaError",
    "StaleSchemaError",
    "SyncRuntime",
    "Telemetry",
    "TranslationError",
    "UnifiedBuffer",
    "UntrustedCacheError",
    "ValidationError",
    "__version__",
    "key_hash",
    "message",
    "prange",
    "ring_kernel",
]
