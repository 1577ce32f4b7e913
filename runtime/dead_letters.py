"""Dead letters: every accepted message that was not delivered, with why (an enum a program can
test) and the detail (text for a person)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class DeadLetterReason(enum.Enum):
    DROPPED_NEWEST = "dropped_newest"  # backpressure 'drop_newest': the new message, queue full
    DROPPED_OLDEST = "dropped_oldest"  # backpressure 'drop_oldest': the oldest of the lowest priority
    LATE_REPLY = "late_reply"  # a response whose request() had timed out already
    KERNEL_FAILED = "kernel_failed"  # the kernel crashed, was killed or failed before processing it
    TERMINATED = "terminated"  # the kernel (or host actor) was terminated before processing it
    UNDECODABLE = "undecodable"  # a response the host cannot decode: the message is its raw bytes
    UNBOUND = "unbound"  # sent to a declared send target (sends=) that is connected to nothing


@dataclass(frozen=True)
class DeadLetter:
    """A message that was not delivered, and why: nothing disappears silently."""

    kernel_id: str
    message: Any  # a message object, a struct array (from send_array), or bytes (UNDECODABLE)
    reason: DeadLetterReason
    detail: str  # what happened, for a person: e.g. the signal the kernel died of
