"""The host side of a kernel's queue: exact 0..255 priority order, FIFO within a priority.

Entries are what the channel stores: message objects (host actors), packed structs as bytes
(one message) or numpy struct arrays (several messages of one priority, from send_array). The
backlog counts messages, not entries, and splits an array when only part of it is taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np


def _count(entry: Any) -> int:
    return len(entry) if isinstance(entry, np.ndarray) else 1


class PriorityBacklog:
    """256 FIFO queues and a bit mask of the non-empty ones (bit p: priority p)."""

    def __init__(self) -> None:
        self._queues: list[deque[Any]] = [deque() for _ in range(256)]
        self._counts = [0] * 256
        self._mask = 0
        self.count = 0  # messages held (len() of it; an attribute for the hot paths' checks)

    def __len__(self) -> int:
        return self.count

    def push(self, entry: Any, priority: int) -> None:
        n = _count(entry)
        if not n:
            return
        self._queues[priority].append(entry)
        self._counts[priority] += n
        self._mask |= 1 << priority
        self.count += n

    def has(self, lo: int, hi: int) -> bool:
        """Whether a message with a priority in lo..hi waits."""
        return bool(self._mask & ((1 << (hi + 1)) - (1 << lo)))

    def highest(self) -> int:
        """The highest priority that holds a message; -1 when empty."""
        return self._mask.bit_length() - 1

    def lowest(self) -> int:
        return (self._mask & -self._mask).bit_length() - 1

    def _take_from(self, priority: int, limit: int) -> list[Any]:
        q, out, taken = self._queues[priority], [], 0
        while q and taken < limit:
            entry = q[0]
            n = _count(entry)
            if n <= limit - taken:
                q.popleft()
                out.append(entry)
                taken += n
            else:  # split an array: the head goes, the tail stays first in line
                k = limit - taken
                out.append(entry[:k])
                q[0] = entry[k:]
                taken += k
        self._counts[priority] -= taken
        self.count -= taken
        if not q:
            self._mask &= ~(1 << priority)
        return out

    def take(self, limit: int, lo: int = 0, hi: int = 255) -> list[Any]:
        """Up to `limit` messages with priorities in lo..hi, highest priority first."""
        out: list[Any] = []
        taken = 0
        window = self._mask & ((1 << (hi + 1)) - (1 << lo))
        while window and taken < limit:
            p = window.bit_length() - 1
            got = self._take_from(p, limit - taken)
            out += got
            taken += sum(_count(e) for e in got)
            window &= ~(1 << p)
        return out

    def peek(self, lo: int = 0, hi: int = 255) -> Any:
        """The next message with a priority in lo..hi (an entry of one message), left in place;
        IndexError when there is none."""
        window = self._mask & ((1 << (hi + 1)) - (1 << lo))
        if not window:
            raise IndexError("peek into an empty priority range")
        entry = self._queues[window.bit_length() - 1][0]
        return entry[:1] if isinstance(entry, np.ndarray) else entry

    def pop(self) -> Any:
        """The next message (an entry of one message) in priority order."""
        p = self.highest()
        if p < 0:
            raise IndexError("pop from an empty backlog")
        return self._take_from(p, 1)[0]

    def drop_oldest_lowest(self) -> Any:
        """Removes and returns the oldest message of the lowest priority."""
        p = self.lowest()
        if p < 0:
            raise IndexError("drop from an empty backlog")
        return self._take_from(p, 1)[0]

    def clear(self) -> Iterator[Any]:
        """Removes everything, yielding the entries in priority order (for dead letters)."""
        while self._mask:
            p = self.highest()
            yield from self._take_from(p, self._counts[p])
