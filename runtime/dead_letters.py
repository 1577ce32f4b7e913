"""Dead letters: every accepted message that was not delivered, with why (an enum a program can
test) and the detail (text for a person)."""

from __future__ import annotations

import enum
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ringgen.runtime")

DEAD_LETTER_MEMORY = 100_000  # the latest dead letters a runtime keeps (it counts them all)


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


class DeadLetterStore:
    """What a runtime keeps of its dead letters, one definition for RingKernelRuntime and
    ClusterRuntime: the latest DEAD_LETTER_MEMORY of them, a count per kernel id that never
    forgets, the user's hook called with each, and one warning when the oldest start to go."""

    def __init__(self, dead_letter_hook: Callable[[DeadLetter], None] | None) -> None:
        self.dead_letter_hook = dead_letter_hook
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_MEMORY)
        self.dead_letter_counts: Counter[str] = Counter()  # per kernel id, never forgotten
        self._warned_dead_letters = False

    def add_dead_letter(self, letter: DeadLetter) -> None:
        if len(self.dead_letters) == self.dead_letters.maxlen and not self._warned_dead_letters:
            log.warning("more than %d dead letters: the oldest are forgotten (telemetry still "
                        "counts them); read runtime.dead_letters or pass dead_letter_hook",
                        DEAD_LETTER_MEMORY)
            self._warned_dead_letters = True
        self.dead_letters.append(letter)
        self.dead_letter_counts[letter.kernel_id] += 1
        if self.dead_letter_hook is not None:
            self.dead_letter_hook(letter)
