"""What the driver sent to a kernel on another node and has not yet seen finished: the
messages that become dead letters if that node dies, since what was queued there dies with it.

An entry leaves the ledger when the driver receives the response correlated to it (request,
receive*), when the node reports it as a dead letter (dropped, failed, terminated, a late
reply), or when a drain() that began after it was sent returns (everything was processed:
the only news a fire-and-forget kernel, or one whose output is connected onward, gives).

Message objects are kept by id in a dict. Struct arrays are kept whole, a batch per
send_array, and settled column-wise with numpy: the array path has no per-message Python, so
that the ledger costs a few percent of a batch's time, not most of it. Responses that come in
the order of their requests (a kernel of one block answers so) are matched by comparing the
next rows, without a search; only the others pay for a sort of their batch.
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


def id_words(rows: np.ndarray, field: str) -> np.ndarray:
    """An id column as (n, 2) uint64 words: ids compared and looked up without Python."""
    return np.ascontiguousarray(rows[field]).view("<u8").reshape(len(rows), 2)


class _Batch:
    """One send_array's rows: which are still open, found by id with a sorted index."""

    def __init__(self, generation: int, rows: np.ndarray) -> None:
        self.generation = generation
        self.rows = rows
        self.ids = id_words(rows, "message_id")
        self.open = np.ones(len(rows), dtype=bool)
        self.left = len(rows)
        self._order: np.ndarray | None = None  # argsort of the keys, made on first lookup
        self._keys: np.ndarray | None = None
        self.cursor = 0  # close_run(): rows before it are closed

    def close_run(self, ids: np.ndarray) -> int:
        """The common case without a search: `ids` ((m, 2) words) begin with this batch's
        next open rows in sending order (a kernel of one block answers in order). Closes
        those rows and returns how many of `ids` they were (0: `ids` do not begin here)."""
        n, c = len(self.rows), self.cursor
        if c < n and not self.open[c]:  # closed out of order meanwhile: skip to the next open
            still = np.flatnonzero(self.open[c:])
            c = self.cursor = c + int(still[0]) if len(still) else n
        m = min(len(ids), n - c)
        if m == 0 or not (self.ids[c] == ids[0]).all():
            return 0
        same = (self.ids[c:c + m] == ids[:m]).all(axis=1)
        k = m if same.all() else int(np.argmin(same))
        self.left -= int(np.count_nonzero(self.open[c:c + k]))
        self.open[c:c + k] = False
        self.cursor = c + k
        return k

    def close(self, ids: np.ndarray) -> np.ndarray:
        """Rows whose id is in `ids` ((m, 2) words) are finished, every row of an id that
        several share; returns which of `ids` were this batch's."""
        if self._order is None:
            keys = self.ids[:, 0] ^ self.ids[:, 1]  # a hint: matches are checked on all 16 bytes
            self._order = np.argsort(keys)
            self._keys = keys[self._order]
        assert self._keys is not None
        keys, last = self._keys, len(self._keys) - 1
        wanted = ids[:, 0] ^ ids[:, 1]
        by_key = np.argsort(wanted)  # sorted needles: a search close to the previous one
        lo = np.empty(len(ids), dtype=np.intp)
        lo[by_key] = np.searchsorted(keys, wanted[by_key])
        np.minimum(lo, last, out=lo)
        shared = (lo < last) & (keys[np.minimum(lo + 1, last)] == wanted)  # rare: np.zeros rows
        rows = self._order[lo]
        found = (self.ids[rows] == ids).all(axis=1) & ~shared
        hit = [rows[found]]
        for i in np.flatnonzero(shared):  # every row of the key, matched on all 16 bytes
            rows = self._order[lo[i]:np.searchsorted(keys, wanted[i], "right")]
            rows = rows[(self.ids[rows] == ids[i]).all(axis=1)]
            found[i] = len(rows) > 0
            hit.append(rows)
        self.open[np.concatenate(hit)] = False
        self.left = int(np.count_nonzero(self.open))
        return found


class Ledger:
    def __init__(self, kernel_id: str) -> None:
        self.kernel_id = kernel_id
        # message id -> (generation, the message); in sending order
        self._open: dict[bytes, tuple[int, Any]] = {}
        self._batches: list[_Batch] = []
        self._generation = 0

    def __len__(self) -> int:
        return len(self._open) + sum(b.left for b in self._batches)

    def add_messages(self, msgs: Sequence[Any]) -> None:
        g = self._generation
        self._open.update((m.message_id.bytes, (g, m)) for m in msgs)

    def add_rows(self, rows: np.ndarray) -> None:
        if len(rows):
            self._batches.append(_Batch(self._generation, rows))

    def forget(self, keys: Iterable[bytes]) -> None:
        """These message objects are finished (answered, dead-lettered, or never accepted)."""
        pop = self._open.pop
        for key in keys:
            pop(key, None)

    def forget_rows(self, rows: np.ndarray, field: str) -> None:
        """The messages whose ids are `rows[field]` are finished, rows or objects."""
        if not len(rows):
            return
        if self._open:
            self.forget(row_ids(rows, field))
        if self._batches:
            ids = self._close_runs(id_words(rows, field))
            for batch in self._batches:  # the rest, oldest first, looked up by sorted index
                if not len(ids):
                    break
                ids = ids[~batch.close(ids)]
            self._batches = [b for b in self._batches if b.left]

    def _close_runs(self, ids: np.ndarray) -> np.ndarray:
        """Closes the ids that come in sending order (Batch.close_run), from the batch where
        they begin on into the next ones while each is run to its end; returns the rest."""
        for batch in self._batches:
            ran = batch.close_run(ids)
            ids = ids[ran:]
            if not len(ids) or (ran and batch.cursor < len(batch.rows)):
                break  # all closed, or the order broke inside this batch
        return ids

    def answered_by(self, responses: Sequence[Any]) -> None:
        self.forget(r.correlation_id.bytes for r in responses if r.correlation_id is not None)

    def settle(self, letter: DeadLetter) -> None:
        """A dead letter the node made names a message (or the request a late reply answers)."""
        msg = letter.message
        if isinstance(msg, np.ndarray):
            self.forget_rows(msg, "message_id")
            self.forget_rows(msg, "correlation_id")
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
        self._batches = [b for b in self._batches if b.generation > mark]

    def fail(self, why: str) -> list[DeadLetter]:
        """Every open entry as a KERNEL_FAILED dead letter (a row each, as one machine makes
        them); the ledger is empty after."""
        letters = [DeadLetter(self.kernel_id, m, DeadLetterReason.KERNEL_FAILED, why)
                   for _, m in self._open.values()]
        for batch in self._batches:
            letters += [DeadLetter(self.kernel_id, batch.rows[i:i + 1],
                                   DeadLetterReason.KERNEL_FAILED, why)
                        for i in np.flatnonzero(batch.open)]
        self._open.clear()
        self._batches.clear()
        return letters
