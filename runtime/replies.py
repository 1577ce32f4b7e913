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

# Rows of the head struct array that take_one() decodes in one native call: enough to spread
# the call's cost, few enough that what waits decoded is not carried through the cyclic GC's
# young collections (4096 at once made receive() twice as costly as one at a time).
DECODE_AHEAD = 64
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
        # receive() takes one response at a time from the struct array at the inbox's head,
        # without a numpy slice each: up to DECODE_AHEAD of its rows decoded in one call of
        # `decode_rows` (where the channel gives one: rows that always decode), else as bytes
        # cut from its copy. `_cut` rows are taken already (_trim_cut() trims the array
        # before anything else reads the inbox, and forgets what was decoded ahead).
        self.decode_rows: Callable[[np.ndarray], list[Any]] | None = None
        self._cut = 0
        self._cut_raw: bytes | None = None
        self._decoded: list[Any] = []  # objects of rows _cut.. of the head, decoded ahead
        self._decoded_at = 0  # the head row that _decoded[0] is
        self.waiters: deque[asyncio.Future[None]] = deque()  # receive*() waiting for the inbox
        # The ids of the messages accepted lately, in two generations of at most MEMORY each:
        # a request() of one of them would be answered by the reply to the earlier send.
        self._sent: set[int] = set()
        self._sent_before: set[int] = set()

    # -- what was sent ----------------------------------------------------------------------

    def check_new(self, key: int) -> None:
        """A request() needs a message of its own: one sent before (by send(), send_many() or
        another request()) has a reply coming or come already, and a second send of the same
        id would be answered twice, the earlier reply taken for this request's."""
        if key in self.pending:
            raise KernelStateError(
                f"kernel {self.kernel_id!r}: a request() with this message (message_id "
                f"{key:032x}) is already waiting for its reply; send a new message object")
        self.check_sent(key)

    def check_sent(self, key: int) -> None:
        """check_new() where no request() is pending (the lone request's fast path)."""
        if key in self._sent or key in self._sent_before:
            raise KernelStateError(
                f"kernel {self.kernel_id!r}: this message (message_id {key:032x}) was sent to "
                "it already, and its reply answers that send; request() a new message object "
                "(construct it again: each message gets a fresh message_id)")

    def expect(self, key: int, future: asyncio.Future[Any]) -> None:
        """A request() waits for the response correlated to message id `key` (always timed)."""
        self.check_new(key)
        self.pending[key] = future
        self.time(key)

    def wait_for(self, key: int, future: asyncio.Future[Any], sent: float) -> None:
        """expect() for a request whose message went out at perf_counter() `sent` already
        (and was remember()ed)."""
        self.pending[key] = future
        self.sent_at[key] = sent
        self._forget_unanswered()

    def settle(self, key: int, gave_up: bool) -> None:
        """The request() for `key` returned; a reply that comes after it gave up (timed out
        or was cancelled) is a dead letter."""
        self.pending.pop(key, None)
        if gave_up:
            self.expired[key] = None
            while len(self.expired) > MEMORY:
                self.expired.popitem(last=False)

    def accepted(self, key: int) -> None:
        """Message id `key` was accepted: remembered (check_new), and one message in
        LATENCY_SAMPLE timed for the latency figures (a dict entry per message would cost a
        bulk sender more than the rest of its bookkeeping)."""
        self.remember(key)
        if not self.counters.sent % LATENCY_SAMPLE:
            self.time(key)

    def remember(self, key: int) -> None:
        """Message id `key` was sent (a request() of it again is refused: check_new)."""
        self._sent.add(key)
        self._age_sent()

    def _age_sent(self) -> None:
        """A full generation of sent ids becomes the older one (the oldest is forgotten)."""
        if len(self._sent) >= MEMORY:
            self._sent_before, self._sent = self._sent, set()

    def accepted_many(self, msgs: Sequence[Any]) -> None:
        """accepted() for a batch: every id remembered, one in LATENCY_SAMPLE timed."""
        self._sent.update([m.message_id.int for m in msgs])
        self._age_sent()
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

    def answered(self, key: int, sent: float) -> None:
        """The reply to request `key`, sent at perf_counter() `sent`, was taken straight from
        the ring and returned (DeviceChannel.request): what route() would have done for it."""
        self.counters.received += 1
        self.counters.latencies.append(time.perf_counter() - sent)
        if self.buffers_in_flight:
            for buffer in self.buffers_in_flight.pop(key, ()):
                buffer.device_wrote()

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

    def take_one(self) -> Any:
        """The next response of a non-empty inbox: an object, or (from a struct array without
        decode_rows) the bytes of one struct."""
        head = self.inbox[0]
        self.inbox_count -= 1
        self.counters.received += 1
        if not isinstance(head, np.ndarray):
            self.inbox.popleft()
            return head
        if self.decode_rows is not None:
            return self._take_decoded(head)
        raw = self._cut_raw
        if raw is None:
            raw = self._cut_raw = head.tobytes()
        size = head.itemsize
        at = self._cut * size
        self._cut += 1
        if self._cut == len(head):
            self.inbox.popleft()
            self._cut, self._cut_raw = 0, None
        return raw[at:at + size]

    def _take_decoded(self, head: np.ndarray) -> Any:
        """take_one() of the head array's next row, from the objects decoded ahead: one native
        call per DECODE_AHEAD rows, then a list index per response."""
        cut = self._cut
        at = cut - self._decoded_at
        if at >= len(self._decoded):
            assert self.decode_rows is not None
            self._decoded = self.decode_rows(head[cut:cut + DECODE_AHEAD])
            self._decoded_at, at = cut, 0
        got = self._decoded[at]
        self._cut = cut + 1
        if self._cut == len(head):
            self.inbox.popleft()
            self._cut, self._decoded, self._decoded_at = 0, [], 0
        return got

    def _trim_cut(self) -> None:
        """The rows take_one() cut from the head array leave it, before the inbox is read."""
        if self._cut:
            self.inbox[0] = self.inbox[0][self._cut:]
            self._cut, self._cut_raw = 0, None
            self._decoded, self._decoded_at = [], 0

    def adopt_inbox(self, old: Replies) -> None:
        """A restart: the failed incarnation's unread responses are this one's."""
        old._trim_cut()
        self._trim_cut()
        self.inbox.extend(old.inbox)
        self.inbox_count += old.inbox_count
        old.inbox.clear()
        old.inbox_count = 0

    def take(self, n: int) -> list[Any]:
        """Up to n inbox entries' worth of responses, in order (arrays split as needed)."""
        self._trim_cut()
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
