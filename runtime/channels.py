"""A launched kernel as the event loop sees it: its backlog, backpressure, response routing,
correlation of requests, telemetry and lifecycle. `DeviceChannel` feeds a ring kernel's lanes;
`HostChannel` runs an `async def f(ctx)` actor on the same rules.

Everything here runs on the event loop's thread; the only other threads are a backend's own
(the CPU runner's stderr reader hands its news over with call_soon_threadsafe).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ringgen.codecs import struct_columns as structs
from ringgen.errors import KernelFaultError, KernelStateError, QueueFullError
from ringgen.runtime.backlog import PriorityBacklog
from ringgen.runtime.telemetry import Counters, Telemetry
from ringgen.runtime.waiting import wait_in, wake_all

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime

log = logging.getLogger("ringgen.runtime")

# Unpacking one message at a time beats numpy's per-call cost below this many.
_VECTOR_MIN = 16
LATENCY_SAMPLE = 8  # one message sent in this many is timed (and every request())
SENT_AT_MEMORY = 100_000  # send times (for latencies) and buffers in flight kept, at most
_EXPIRED_MEMORY = 100_000  # ids of timed-out requests remembered, to catch late replies


class KernelState(enum.Enum):
    LAUNCHED = "launched"
    ACTIVE = "active"
    PAUSED = "paused"
    TERMINATED = "terminated"
    FAILED = "failed"


@dataclass(frozen=True)
class DeadLetter:
    """A message that was not delivered, and why: nothing disappears silently."""

    kernel_id: str
    message: Any  # a message object, or a struct array (from send_array)
    reason: str


class Channel:
    """What device kernels and host actors share: the backlog in exact priority order with
    its backpressure, the inbox of responses, request correlation and the counters."""

    backend_name = "host"

    def __init__(self, runtime: RingKernelRuntime, kernel_id: str, input_cls: type | None,
                 output_cls: type | None, queue_size: int, backpressure: str,
                 out_dtype: np.dtype | None) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self.deadlines = runtime.deadlines
        self.kernel_id = kernel_id
        self.input_cls, self.output_cls = input_cls, output_cls
        self.queue_size = queue_size
        self.backpressure = backpressure
        self.out_dtype = out_dtype
        self.answers = output_cls is not None  # sends responses (host actors always may)
        self.state = KernelState.LAUNCHED
        self.failure: str | None = None
        self.backlog = PriorityBacklog()
        self.counters = Counters()
        self.inbox: deque[Any] = deque()  # response objects and struct-array chunks, in order
        self.inbox_count = 0
        self.pending: dict[bytes, asyncio.Future[Any]] = {}  # request() by message_id bytes
        self.expired: OrderedDict[bytes, None] = OrderedDict()
        self.sent_at: OrderedDict[bytes, float] = OrderedDict()  # timed messages, by id
        self._buffer_fields = _buffer_fields(input_cls)
        self.buffers_in_flight: OrderedDict[bytes, list[Any]] = OrderedDict()  # id -> its buffers
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._response_waiters: deque[asyncio.Future[None]] = deque()

    # -- sending ---------------------------------------------------------------------------

    def check_message(self, msg: Any) -> None:
        if self.input_cls is not None and type(msg) is not self.input_cls:
            raise TypeError(
                f"kernel {self.kernel_id!r} takes {self.input_cls.__name__} messages, not "
                f"{type(msg).__name__}; nothing was enqueued")
        if not hasattr(msg, "message_id"):
            raise TypeError(f"send takes @message objects, not {type(msg).__name__}")

    def check_open(self) -> None:
        if self.state is KernelState.FAILED:
            raise KernelFaultError(f"kernel {self.kernel_id!r} failed: {self.failure}")
        if self.state is KernelState.TERMINATED:
            raise KernelStateError(f"kernel {self.kernel_id!r} is terminated; launch it again")

    def entry_of(self, msg: Any) -> Any:
        """What the backlog keeps for a message: the message itself, for host actors."""
        self.buffers_to_device(msg)
        return msg

    def buffers_to_device(self, msg: Any) -> None:
        """Publish the host's writes to the buffers a message references, before it goes."""
        if not self._buffer_fields:
            return
        from ringgen.runtime.buffers import lookup

        buffers = []
        for name in self._buffer_fields:
            ref = getattr(msg, name)
            if ref is not None:
                buffer = lookup(ref)
                buffer.to_device()
                buffers.append(buffer)
        if buffers:
            self.buffers_in_flight[msg.message_id.bytes] = buffers
            while len(self.buffers_in_flight) > SENT_AT_MEMORY:  # never answered: forgotten
                self.buffers_in_flight.popitem(last=False)

    async def send(self, msg: Any, timeout: float | None = None) -> bool:
        """Enqueue one message under the backpressure strategy; False if it was dropped."""
        self.check_open()
        self.check_message(msg)
        return await self.enqueue(msg, self.entry_of(msg), timeout)

    async def enqueue(self, msg: Any, entry: Any, timeout: float | None) -> bool:
        """send() of a checked message whose backlog entry is made already."""
        if not await self._admit(entry, msg.priority, msg, 1, timeout):
            return False
        self.sample_sent(msg)
        self.enqueued()
        return True

    def sample_sent(self, msg: Any) -> None:
        """Time one accepted message in LATENCY_SAMPLE for the latency figures: a dict entry
        per message would cost a bulk sender more than the rest of its bookkeeping."""
        if self.answers and not self.counters.sent % LATENCY_SAMPLE:
            self.sent_at[msg.message_id.bytes] = time.perf_counter()
            self.forget_unanswered()

    def forget_unanswered(self) -> None:
        """Send times are taken back by route() with their responses; a handler that answers
        nothing would leave them forever, so the oldest go past SENT_AT_MEMORY."""
        while len(self.sent_at) > SENT_AT_MEMORY:
            self.sent_at.popitem(last=False)

    async def send_many(self, msgs: Sequence[Any], timeout: float | None = None) -> int:
        """Enqueue messages in order; returns how many were accepted (drops excluded)."""
        self.check_open()
        for m in msgs:
            self.check_message(m)
        accepted = 0
        for msg in msgs:
            if await self._admit(self.entry_of(msg), msg.priority, msg, 1, timeout):
                accepted += 1
                self.sample_sent(msg)
        self.enqueued()
        return accepted

    async def _admit(self, entry: Any, priority: int, original: Any, count: int,
                     timeout: float | None) -> bool:
        deadline = None if timeout is None else self.loop.time() + timeout
        while len(self.backlog) + count > self.queue_size:
            strategy = self.backpressure
            if strategy == "reject":
                raise QueueFullError(
                    f"kernel {self.kernel_id!r}: its queue holds {len(self.backlog)} of "
                    f"{self.queue_size} messages (backpressure='reject'); retry later, raise "
                    "queue_size, or choose 'block'")
            if strategy == "drop_newest":
                self.dead_letter(original, "dropped by backpressure 'drop_newest': queue full")
                return False
            if strategy == "drop_oldest":
                if priority < self.backlog.lowest():  # the new one is the oldest of the lowest
                    self.dead_letter(original, "dropped by backpressure 'drop_oldest': queue full")
                    return False
                victim = self.backlog.drop_oldest_lowest()
                self.dead_letter(self.message_of(victim),
                                 "dropped by backpressure 'drop_oldest': queue full", accepted=True)
                continue
            await self._wait_for_space(deadline, count)
            self.check_open()
        self.backlog.push(entry, priority)
        self.counters.sent += count
        return True

    async def _wait_for_space(self, deadline: float | None, count: int) -> None:
        self.enqueued()  # move on what send_many admitted so far: it may make the room
        if len(self.backlog) + count <= self.queue_size:
            return
        if not await wait_in(self.deadlines, self._space_waiters, deadline):
            raise QueueFullError(
                f"kernel {self.kernel_id!r}: no room in its queue of {self.queue_size} messages "
                "within the timeout (backpressure='block'); is the kernel activated?")

    def space_freed(self) -> None:
        """Wake the blocked senders; each checks whether its messages fit now."""
        if len(self.backlog) < self.queue_size:
            wake_all(self._space_waiters)

    def enqueued(self) -> None:
        """New messages are in the backlog (subclasses move them on)."""

    def message_of(self, entry: Any) -> Any:
        """The message object (or struct array) an entry stands for, for a dead letter."""
        return entry

    def dead_letter(self, message: Any, reason: str, accepted: bool = False) -> None:
        """Hand a message over to the dead letters; `accepted`: it had been counted as sent."""
        count = len(message) if isinstance(message, np.ndarray) else 1
        self.counters.dropped += count
        if accepted:
            self.counters.evicted += count
        self.runtime.add_dead_letter(DeadLetter(self.kernel_id, message, reason))

    # -- responses -------------------------------------------------------------------------

    def route(self, responses: Sequence[Any]) -> None:
        """Deliver response objects: to the request() awaiting them, to the dead letters if
        that request already gave up, else to the inbox for receive()."""
        now = time.perf_counter()
        for resp in responses:
            corr = resp.correlation_id
            key = corr.bytes if corr is not None else None
            if key is not None:
                for buffer in self.buffers_in_flight.pop(key, ()):
                    buffer.device_wrote()
                sent = self.sent_at.pop(key, None)
                if sent is not None:
                    self.counters.latencies.append(now - sent)
                future = self.pending.pop(key, None)
                if future is not None:
                    self.counters.received += 1
                    if not future.done():
                        future.set_result(resp)
                    continue
                if key in self.expired:
                    del self.expired[key]
                    self.dead_letter(resp, "late reply: its request() had timed out")
                    continue
            self.inbox.append(resp)
            self.inbox_count += 1
        self.responses_arrived()

    def responses_arrived(self) -> None:
        wake_all(self._response_waiters)

    def _take(self, n: int) -> list[Any]:
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

    def objects_of(self, entries: list[Any]) -> list[Any]:
        out: list[Any] = []
        for e in entries:
            if isinstance(e, np.ndarray):
                out += self.unpack_rows(e)
            else:
                out.append(e)
        return out

    def unpack_rows(self, rows: np.ndarray) -> list[Any]:
        assert self.output_cls is not None
        return structs.unpack(self.output_cls, rows)

    async def _wait_for_responses(self, deadline: float | None) -> bool:
        """Waits until the inbox may hold something; False on timeout."""
        self.check_receivable()
        self.want_responses()  # may itself find responses: then there is nothing to wait for
        if self.inbox_count:
            return True
        return await wait_in(self.deadlines, self._response_waiters, deadline)

    def want_responses(self) -> None:
        """Someone waits for responses (a device channel makes sure it will be woken)."""

    def check_receivable(self) -> None:
        if self.inbox_count:
            return
        if not self.answers:
            raise KernelStateError(f"kernel {self.kernel_id!r} sends no responses "
                                   "(fire-and-forget)")
        if self.state is KernelState.FAILED:
            raise KernelFaultError(f"kernel {self.kernel_id!r} failed: {self.failure}")
        if self.state is KernelState.TERMINATED:
            raise KernelStateError(f"kernel {self.kernel_id!r} is terminated and has no "
                                   "responses left to receive")

    async def receive_many(self, max_count: int, timeout: float | None) -> list[Any]:
        deadline = None if timeout is None else self.loop.time() + timeout
        self.poll_responses()
        while not self.inbox_count:
            if not await self._wait_for_responses(deadline):
                return []
            self.poll_responses()
        return self.objects_of(self._take(max_count))

    async def receive(self, timeout: float | None) -> Any:
        got = await self.receive_many(1, timeout)
        if not got:
            raise asyncio.TimeoutError(
                f"no response from kernel {self.kernel_id!r} within {timeout} s")
        return got[0]

    async def receive_array(self, max_count: int, timeout: float | None) -> np.ndarray:
        deadline = None if timeout is None else self.loop.time() + timeout
        self.poll_responses()
        while not self.inbox_count:
            if not await self._wait_for_responses(deadline):
                assert self.out_dtype is not None
                return np.empty(0, dtype=self.out_dtype)
            self.poll_responses()
        chunks = self._take(max_count)
        arrays = [c if isinstance(c, np.ndarray) else self.pack_response(c) for c in chunks]
        return arrays[0] if len(arrays) == 1 else structs.concatenate(arrays)

    def pack_response(self, msg: Any) -> np.ndarray:
        if self.out_dtype is None or self.output_cls is None:
            raise KernelStateError(f"responses of {self.kernel_id!r} have no C layout, so no "
                                   "struct array; use receive_many()")
        return structs.pack(self.output_cls, self.out_dtype, [msg])

    def poll_responses(self) -> None:
        """Move responses that arrived meanwhile into the inbox (device channels)."""

    async def request(self, msg: Any, timeout: float | None) -> Any:
        if not self.answers:
            raise KernelStateError(f"kernel {self.kernel_id!r} sends no responses "
                                   "(fire-and-forget); use send()")
        key = msg.message_id.bytes
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pending[key] = future
        self.sent_at[key] = time.perf_counter()  # every request is timed
        self.forget_unanswered()
        try:
            if not await self.send(msg, timeout):
                raise QueueFullError(f"kernel {self.kernel_id!r}: the request was dropped by "
                                     f"backpressure '{self.backpressure}'")
            self.want_responses()
            return await self.deadlines.wait(future, timeout)
        except asyncio.TimeoutError:
            self.expired[key] = None
            while len(self.expired) > _EXPIRED_MEMORY:
                self.expired.popitem(last=False)
            raise asyncio.TimeoutError(
                f"no reply from kernel {self.kernel_id!r} within {timeout} s; a late reply "
                "will go to the dead letters") from None
        finally:
            self.pending.pop(key, None)

    # -- lifecycle -------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """The kernel died: pending requests fail, the backlog goes to the dead letters."""
        if self.state in (KernelState.FAILED, KernelState.TERMINATED):
            return
        self.state = KernelState.FAILED
        self.failure = reason
        log.error("kernel %s failed: %s", self.kernel_id, reason)
        error = KernelFaultError(f"kernel {self.kernel_id!r} failed: {reason}")
        self._fail_waiters(error)
        for entry in self.backlog.clear():
            self.dead_letter(self.message_of(entry), f"kernel failed before processing it: {reason}",
                             accepted=True)

    def _fail_waiters(self, error: Exception) -> None:
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        wake_all(self._space_waiters)  # they re-check and raise
        wake_all(self._response_waiters)

    def closed(self, reason: str) -> None:
        """After terminate: whatever was never processed goes to the dead letters."""
        self.state = KernelState.TERMINATED
        self._fail_waiters(KernelStateError(f"kernel {self.kernel_id!r} was terminated"))
        for entry in self.backlog.clear():
            self.dead_letter(self.message_of(entry), reason, accepted=True)

    def device_counts(self) -> tuple[int, int]:
        """(processed, errors) as the kernel counts them."""
        return self.counters.processed, self.counters.errors

    def in_device(self) -> int:
        return 0

    def telemetry(self) -> Telemetry:
        processed, errors = self.device_counts()
        p50, p99 = self.counters.percentiles()
        depth = len(self.backlog) + self.in_device()
        return Telemetry(self.kernel_id, self.state.value, self.backend_name, self.counters.sent,
                         self.counters.received, processed, self.counters.dropped, errors,
                         depth, self.in_flight(), p50, p99)

    def in_flight(self) -> int:
        """Accepted and neither processed nor dropped since."""
        processed, _ = self.device_counts()
        return max(self.counters.sent - self.counters.evicted - processed, 0)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the kernel has processed every message accepted so far (responses may
        still wait in the inbox): what a fire-and-forget sender does before it shuts down."""
        deadline = None if timeout is None else self.loop.time() + timeout
        nap = 0.0001
        while self.in_flight():
            self.check_open()
            if self.state is not KernelState.ACTIVE:
                raise KernelStateError(
                    f"kernel {self.kernel_id!r} is {self.state.value}: its {self.in_flight()} "
                    "messages in flight would never be processed; activate it first")
            if deadline is not None and self.loop.time() >= deadline:
                raise asyncio.TimeoutError(
                    f"kernel {self.kernel_id!r} still has {self.in_flight()} messages in flight "
                    f"after {timeout} s")
            self.poll_responses()  # a kernel whose output ring is full waits for the host
            await asyncio.sleep(nap)
            nap = min(nap * 2, 0.005)

    async def activate(self) -> None:
        self.check_open()
        self.state = KernelState.ACTIVE

    async def deactivate(self) -> None:
        self.check_open()
        self.state = KernelState.PAUSED

    async def terminate(self, timeout: float) -> None:
        raise NotImplementedError


def _buffer_fields(cls: type | None) -> list[str]:
    """The fields of a message class that hold a BufferRef (or an optional one)."""
    from ringgen.schema.types import Kind

    if cls is None:
        return []
    fields = []
    for spec in cls._rg_codec().fields:  # type: ignore[attr-defined]
        node = spec.node.args[0] if spec.node.kind is Kind.OPTIONAL else spec.node
        if node.kind is Kind.BUFFER_REF:
            fields.append(spec.name)
    return fields
