"""Where a kernel's responses go: to the request() awaiting each one (by correlation id), to
the dead letters when that request gave up already, else to the inbox for receive*().

The bookkeeping of a kernel's answers lives here, apart from its queue and its lifecycle
(runtime/channels.py): pending requests, recently expired ones, send times for the latency
figures, the buffers a message in flight references, and the inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ringgen.errors import KernelStateError
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.telemetry import Counters
from ringgen.runtime.waiting import wake_all

LATENCY_SAMPLE = 8  # one message sent in this many is timed (and every request())
MEMORY = 100_000  # send times, buffers in flight and expired request ids kept, at most each


class Replies:
    def __init__(self, kernel_id: str, counters: Counters,
                 dead_letter: Callable[[Any, DeadLetterReason, str], None]) -> None:
        self.kernel_id = kernel_id
        self.counters = counters
        self._dead_letter = dead_letter
        self.pending: dict[int, asyncio.Future[Any]] = {}  # request() by message_id.int
        self.expired: OrderedDict[int, None] = OrderedDict()
        self.sent_at: OrderedDict[int, float] = OrderedDict()  # timed messages, by id
        self.buffers_in_flight: OrderedDict[int, list[Any]] = OrderedDict()  # id -> its buffers
        self.inbox: deque[Any] = deque()  # response objects and struct-array chunks, in order
        self.inbox_count = 0
        self.waiters: deque[asyncio.Future[None]] = deque()  # receive*() waiting for the inbox

    # -- what was sent ----------------------------------------------------------------------

    def expect(self, key: int, future: asyncio.Future[Any]) -> None:
        """A request() waits for the response correlated to message id `key` (always timed)."""
        if key in self.pending:
            raise KernelStateError(
                f"kernel {self.kernel_id!r}: a request() with this message (message_id "
                f"{key:032x}) is already waiting for its reply; send a new message object")
        self.pending[key] = future
        self.time(key)

    def settle(self, key: int, gave_up: bool) -> None:
        """The request() for `key` returned; a reply that comes after it gave up (timed out
        or was cancelled) is a dead letter."""
        self.pending.pop(key, None)
        if gave_up:
            self.expired[key] = None
            while len(self.expired) > MEMORY:
                self.expired.popitem(last=False)

    def sample(self, msg: Any) -> None:
        """Time one accepted message in LATENCY_SAMPLE for the latency figures: a dict entry
        per message would cost a bulk sender more than the rest of its bookkeeping."""
        if not self.counters.sent % LATENCY_SAMPLE:
            self.time(msg.message_id.int)

    def sample_many(self, msgs: Sequence[Any]) -> None:
        now = time.perf_counter()
        self.sent_at.update((m.message_id.int, now) for m in msgs[::LATENCY_SAMPLE])
        self._forget_unanswered()

    def time(self, key: int) -> None:
        self.sent_at[key] = time.perf_counter()
        self._forget_unanswered()

    def _forget_unanswered(self) -> None:
        """Send times are taken back by route() with their responses; a handler that answers
        nothing would leave them forever, so the oldest go past MEMORY."""
        while len(self.sent_at) > MEMORY:
            self.sent_at.popitem(last=False)

    def hold_buffers(self, key: int, buffers: list[Any]) -> None:
        """The buffers a message references are the device's until its response comes."""
        self.buffers_in_flight[key] = buffers
        while len(self.buffers_in_flight) > MEMORY:  # never answered: forgotten
            self.buffers_in_flight.popitem(last=False)

    # -- what comes back --------------------------------------------------------------------

    @property
    def wants_objects(self) -> bool:
        """Whether arriving responses must be looked at one by one (a request() or a buffer
        waits for one), rather than kept as the struct array they came as."""
        return bool(self.pending or self.expired or self.buffers_in_flight)

    @property
    def awaited(self) -> bool:
        """Whether anyone waits for a response now."""
        return bool(self.pending or self.waiters)

    def route(self, responses: Sequence[Any]) -> None:
        """Deliver response objects: to the request() awaiting them, to the dead letters if
        that request already gave up, else to the inbox."""
        now = time.perf_counter()
        for resp in responses:
            corr = resp.correlation_id
            key = corr.int if corr is not None else None
            if key is not None:
                for buffer in self.buffers_in_flight.pop(key, ()):
                    buffer.device_wrote()
                sent = self.sent_at.pop(key, None)
                if sent is not None:
                    self.counters.latencies.append(now - sent)
                future = self.pending.pop(key, None)
                if future is not None and not future.done():
                    self.counters.received += 1
                    future.set_result(resp)
                    continue
                # A future that is done already timed out (or was cancelled) and its request()
                # has not run its settle() yet: the reply is as late as one after it.
                if future is not None or key in self.expired:
                    self.expired.pop(key, None)
                    self._dead_letter(resp, DeadLetterReason.LATE_REPLY,
                                      "a reply that came after its request() had timed out")
                    continue
            self.inbox.append(resp)
            self.inbox_count += 1
        wake_all(self.waiters)

    def deliver_rows(self, rows: np.ndarray) -> None:
        """Responses kept as the struct array they arrived as (nobody awaits one of them)."""
        self.inbox.append(rows)
        self.inbox_count += len(rows)
        wake_all(self.waiters)

    def time_arrivals(self, keys: list[int]) -> None:
        """Latencies of the timed messages among responses of these correlation ids (one in
        LATENCY_SAMPLE is timed: the set intersection finds those in C, not a lookup each)."""
        now, pop, latencies = time.perf_counter(), self.sent_at.pop, self.counters.latencies
        for key in self.sent_at.keys() & keys:
            latencies.append(now - pop(key))

    def take(self, n: int) -> list[Any]:
        """Up to n inbox entries' worth of responses, in order (arrays split as needed)."""
        out: list[Any] = []
        taken = 0
        while self.inbox and taken < n:
            head = self.inbox[0]
            if isinstance(head, np.ndarray):
                k = min(len(head), n - taken)
                out.append(head[:k])
                if k == len(head):
                    self.inbox.popleft()
                else:
                    self.inbox[0] = head[k:]
                taken += k
            else:
                out.append(self.inbox.popleft())
                taken += 1
        self.inbox_count -= taken
        self.counters.received += taken
        return out

    def refuse(self, key: int, error: Exception) -> None:
        """The response to request `key` cannot be delivered: its request() raises `error`."""
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def fail_all(self, error: Exception) -> None:
        """Every waiting request() raises `error`; waiting receivers wake and look again."""
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        wake_all(self.waiters)
