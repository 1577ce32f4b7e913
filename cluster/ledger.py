"""What the driver sent to a kernel on another node and has not yet seen finished: the
messages that become dead letters if that node dies, since what was queued there dies with it.

An entry leaves the ledger when the driver receives the response correlated to it (request,
receive*), when the node reports it as a dead letter (dropped, failed, terminated, a late
reply), or when a drain() that began after it was sent returns (everything was processed:
the only news a fire-and-forget kernel, or one whose output is connected onward, gives).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason

ID_BYTES = 16


def row_ids(rows: np.ndarray, field: str) -> list[bytes]:
    """The 16-byte ids of a struct array's message_id or correlation_id column."""
    raw = np.ascontiguousarray(rows[field]).tobytes()
    return [raw[i:i + ID_BYTES] for i in range(0, len(raw), ID_BYTES)]


class Ledger:
    def __init__(self, kernel_id: str) -> None:
        self.kernel_id = kernel_id
        # message id -> (generation, the message, or (struct array, row)); in sending order
        self._open: dict[bytes, tuple[int, Any]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._open)

    def add_messages(self, msgs: Sequence[Any]) -> None:
        g = self._generation
        self._open.update((m.message_id.bytes, (g, m)) for m in msgs)

    def add_rows(self, rows: np.ndarray) -> None:
        g = self._generation
        self._open.update((key, (g, (rows, i))) for i, key in enumerate(row_ids(rows, "message_id")))

    def forget(self, keys: Iterable[bytes]) -> None:
        """These are finished (answered, dead-lettered, or never accepted)."""
        pop = self._open.pop
        for key in keys:
            pop(key, None)

    def answered_by(self, responses: Sequence[Any]) -> None:
        self.forget(r.correlation_id.bytes for r in responses if r.correlation_id is not None)

    def settle(self, letter: DeadLetter) -> None:
        """A dead letter the node made names a message (or the request a late reply answers)."""
        msg = letter.message
        if isinstance(msg, np.ndarray):
            self.forget(row_ids(msg, "message_id") + row_ids(msg, "correlation_id"))
        elif hasattr(msg, "message_id"):
            keys = [msg.message_id.bytes]
            if getattr(msg, "correlation_id", None) is not None:
                keys.append(msg.correlation_id.bytes)
            self.forget(keys)

    def mark(self) -> int:
        """Before a drain(): drained() then forgets what was sent up to now."""
        self._generation += 1
        return self._generation - 1

    def drained(self, mark: int) -> None:
        self._open = {k: v for k, v in self._open.items() if v[0] > mark}

    def fail(self, why: str) -> list[DeadLetter]:
        """Every open entry as a KERNEL_FAILED dead letter; the ledger is empty after."""
        letters = []
        for _, entry in self._open.values():
            message = entry[0][entry[1]:entry[1] + 1] if isinstance(entry, tuple) else entry
            letters.append(DeadLetter(self.kernel_id, message, DeadLetterReason.KERNEL_FAILED, why))
        self._open.clear()
        return letters
