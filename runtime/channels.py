"""A launched kernel as the event loop sees it: its backlog in exact priority order, admission
under its backpressure strategy, its lifecycle and telemetry; where its responses go is its
`Replies` (runtime/replies.py). `DeviceChannel` feeds a ring kernel's lanes; `HostChannel`
runs an `async def f(ctx)` actor on the same rules.

Admission is synchronous (`try_admit`, `send_nowait`); the async `send` only waits for room.

Everything here runs on the event loop's thread; the only other threads are a backend's own
(the CPU runner's stderr reader hands its news over with call_soon_threadsafe).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ringgen.codecs.structs import StructCodec, concatenate
from ringgen.errors import (
    KernelFaultError,
    KernelStateError,
    MessageSerializationError,
    QueueFullError,
)
from ringgen.runtime.backlog import PriorityBacklog
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason
from ringgen.runtime.replies import Replies
from ringgen.runtime.telemetry import Counters, Telemetry
from ringgen.runtime.waiting import RoomWaiters, wait_in

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime
    from ringgen.runtime.supervisor import Carried, Decision

log = logging.getLogger("ringgen.runtime")


class KernelState(enum.Enum):
    LAUNCHED = "launched"
    ACTIVE = "active"
    PAUSED = "paused"
    TERMINATED = "terminated"
    FAILED = "failed"


class Admission(enum.Enum):
    """What try_admit() did with a message."""

    ACCEPTED = "accepted"  # in the backlog, counted as sent
    DROPPED = "dropped"  # backpressure dropped it (or an older one): a dead letter now
    FULL = "full"  # backpressure 'block' and no room: wait for space_freed() and try again


class Channel:
    """What device kernels and host actors share: the backlog in exact priority order with
    its backpressure, the replies (runtime/replies.py), the lifecycle and the counters."""

    backend_name = "host"
    device: int | None = None  # a device kernel's device number (launch(..., device=N))

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
        # responses as C structs: device kernels' (and host actors' answering receive_array())
        self.out_codec = (StructCodec(output_cls, out_dtype)
                          if output_cls is not None and out_dtype is not None else None)
        self.answers = output_cls is not None  # sends responses (host actors always may)
        self.state = KernelState.LAUNCHED
        self.failure: str | None = None
        self.restart_note = ""  # after a failure: whether, and when, supervision restarts it
        self.lost_device: str | None = None  # another kernel lost the device this one ran on
        self.backlog = PriorityBacklog()
        self.counters = Counters()
        self.replies = Replies(kernel_id, self.counters, self.dead_letter)
        self._buffer_fields = _buffer_fields(input_cls)
        self._space_waiters = RoomWaiters()

    # -- sending ---------------------------------------------------------------------------

    def check_message(self, msg: Any) -> None:
        if self.input_cls is not None and type(msg) is not self.input_cls:
            raise TypeError(
                f"kernel {self.kernel_id!r} takes {self.input_cls.__name__} messages, not "
                f"{type(msg).__name__}; nothing was enqueued")
        if not hasattr(msg, "message_id"):
            raise TypeError(f"send takes @message objects, not {type(msg).__name__}")

    def failed_error(self) -> KernelFaultError:
        return KernelFaultError(f"kernel {self.kernel_id!r} failed: {self.failure}"
                                f"{self.restart_note}")

    def check_open(self) -> None:
        if self.state is KernelState.FAILED:
            raise self.failed_error()
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
            self.replies.hold_buffers(msg.message_id.int, buffers)

    def try_admit(self, entry: Any, priority: int, original: Any, count: int) -> Admission:
        """Put a backlog entry of `count` messages in, under the backpressure strategy, without
        waiting: ACCEPTED, DROPPED (a dead letter now) or FULL ('block': no room yet).
        QueueFullError with 'reject'."""
        while len(self.backlog) + count > self.queue_size:
            strategy = self.backpressure
            if strategy == "reject":
                raise QueueFullError(
                    f"kernel {self.kernel_id!r}: its queue holds {len(self.backlog)} of "
                    f"{self.queue_size} messages (backpressure='reject'); retry later, raise "
                    "queue_size, or choose 'block'")
            if strategy == "drop_newest":
                self.dead_letter(original, DeadLetterReason.DROPPED_NEWEST,
                                 "dropped by backpressure 'drop_newest': queue full")
                return Admission.DROPPED
            if strategy == "drop_oldest":
                detail = "dropped by backpressure 'drop_oldest': queue full"
                if priority < self.backlog.lowest():  # the new one is the oldest of the lowest
                    self.dead_letter(original, DeadLetterReason.DROPPED_OLDEST, detail)
                    return Admission.DROPPED
                victim = self.backlog.drop_oldest_lowest()
                self.dead_letter(self.message_of(victim), DeadLetterReason.DROPPED_OLDEST, detail,
                                 accepted=True)
                continue
            return Admission.FULL
        self.backlog.push(entry, priority)
        self.counters.sent += count
        return Admission.ACCEPTED

    async def admit(self, entry: Any, priority: int, original: Any, count: int,
                    timeout: float | None) -> bool:
        """try_admit(), waiting up to `timeout` for room while the queue is full ('block');
        False if the message was dropped."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while (outcome := self.try_admit(entry, priority, original, count)) is Admission.FULL:
            await self._wait_for_space(deadline, count)
            self.check_open()
        return outcome is Admission.ACCEPTED

    def send_nowait(self, msg: Any) -> bool:
        """Enqueue one message now or not at all: False if backpressure dropped it,
        QueueFullError where send() would wait for room."""
        self.check_open()
        self.check_message(msg)
        outcome = self.try_admit(self.entry_of(msg), msg.priority, msg, 1)
        if outcome is Admission.FULL:
            raise QueueFullError(
                f"kernel {self.kernel_id!r}: its queue of {self.queue_size} messages is full; "
                "await send() to wait for room")
        if outcome is Admission.ACCEPTED:
            self.sent(msg)
        return outcome is Admission.ACCEPTED

    async def send(self, msg: Any, timeout: float | None = None) -> bool:
        """Enqueue one message under the backpressure strategy; False if it was dropped."""
        self.check_open()
        self.check_message(msg)
        return await self.enqueue(msg, self.entry_of(msg), timeout)

    async def send_in_conversation(self, msg: Any, timeout: float | None = None) -> bool:
        """send() of a message that continues a conversation (forwarded over a connection by
        a host actor): what answers it keeps its correlation_id. A host actor keeps it itself
        (actors.py: answered); a device kernel is told by a header flag (DeviceChannel)."""
        return await self.send(msg, timeout)

    async def enqueue(self, msg: Any, entry: Any, timeout: float | None) -> bool:
        """send() of a checked message whose backlog entry is made already."""
        if not await self.admit(entry, msg.priority, msg, 1, timeout):
            return False
        self.sent(msg)
        return True

    def sent(self, msg: Any) -> None:
        """One message was accepted: sample its send time, move the backlog on."""
        if self.answers:
            self.replies.accepted(msg.message_id.int)
        self.enqueued()

    async def send_many(self, msgs: Sequence[Any], timeout: float | None = None) -> int:
        """Enqueue messages in order; returns how many were accepted (drops excluded). With
        'reject' the batch goes in whole or not at all; a 'block' that times out raises
        QueueFullError with the indices of those accepted before it."""
        self.check_open()
        for m in msgs:
            self.check_message(m)
        self.check_batch_fits(len(msgs))
        accepted = 0
        for i, msg in enumerate(msgs):
            try:
                admitted = await self.admit(self.entry_of(msg), msg.priority, msg, 1, timeout)
            except QueueFullError as e:
                raise QueueFullError(str(e), accepted=np.arange(i)) from None
            if admitted:
                accepted += 1
                if self.answers:
                    self.replies.accepted(msg.message_id.int)
        self.enqueued()
        return accepted

    def check_batch_fits(self, count: int) -> None:
        """'reject' admits a batch whole or refuses all of it, so that a caller who retries a
        refused batch sends no message twice."""
        if self.backpressure == "reject" and len(self.backlog) + count > self.queue_size:
            raise QueueFullError(
                f"kernel {self.kernel_id!r}: a batch of {count} messages does not fit its queue "
                f"({len(self.backlog)} of {self.queue_size} held, backpressure='reject'); none "
                "of it was accepted: retry later, send smaller batches, raise queue_size, or "
                "choose 'block'", accepted=np.empty(0, dtype=np.int64))

    async def _wait_for_space(self, deadline: float | None, count: int) -> None:
        self.enqueued()  # move on what send_many admitted so far: it may make the room
        if len(self.backlog) + count <= self.queue_size:
            return
        try:
            woken = await self._space_waiters.wait(self.deadlines, count, deadline)
        except asyncio.CancelledError:
            self.space_freed()  # a wake-up given to this sender goes to the next in line
            raise
        if not woken:
            raise QueueFullError(
                f"kernel {self.kernel_id!r}: no room in its queue of {self.queue_size} messages "
                "within the timeout (backpressure='block'); is the kernel activated?")

    def space_freed(self) -> None:
        """Wake the blocked senders whose messages fit in the free places, first blocked first
        (RoomWaiters.wake); each checks whether its messages fit now, and one that finds no room
        parks again. A sender woken for nothing (cancelled) passes its wake-up on."""
        room = self.queue_size - len(self.backlog)
        if room > 0 and self._space_waiters:
            self._space_waiters.wake(room)

    def enqueued(self) -> None:
        """New messages are in the backlog (subclasses move them on)."""

    def message_of(self, entry: Any) -> Any:
        """The message object (or struct array) an entry stands for, for a dead letter."""
        return entry

    def dead_letter(self, message: Any, reason: DeadLetterReason, detail: str,
                    accepted: bool = False) -> None:
        """Hand a message over to the dead letters; `accepted`: it had been counted as sent."""
        count = len(message) if isinstance(message, np.ndarray) else 1
        self.counters.dropped += count
        if accepted:
            self.counters.evicted += count
        self.runtime.add_dead_letter(DeadLetter(self.kernel_id, message, reason, detail))

    # -- responses -------------------------------------------------------------------------

    def objects_of(self, entries: list[Any]) -> list[Any]:
        out: list[Any] = []
        for e in entries:
            if isinstance(e, np.ndarray):
                out += self.unpack_rows(e)
            else:
                out.append(e)
        return out

    def unpack_rows(self, rows: np.ndarray | bytes) -> list[Any]:
        """Response structs -> message objects. One that cannot be decoded (a handler wrote
        invalid UTF-8, or a count over its MaxLen) is an UNDECODABLE dead letter with its raw
        bytes, and a request() awaiting it raises; the others go on."""
        codec = self.out_codec
        assert codec is not None  # struct rows come only from a struct layout
        try:
            return codec.unpack_many(rows)
        except (MessageSerializationError, ValueError):
            pass  # one by one, to find the bad ones (rare: only a broken handler makes them)
        raw = rows.tobytes() if isinstance(rows, np.ndarray) else bytes(rows)
        out = []
        for at in range(0, len(raw), codec.itemsize):
            one = raw[at:at + codec.itemsize]
            try:
                out.append(codec.unpack(one))
            except (MessageSerializationError, ValueError) as e:
                self._undecodable(one, e)
        return out

    def _undecodable(self, raw: bytes, error: Exception) -> None:
        detail = (f"kernel {self.kernel_id!r} wrote a response the host cannot decode ({error}); "
                  "fix its handler: the dead letter holds the struct's raw bytes")
        self.dead_letter(raw, DeadLetterReason.UNDECODABLE, detail)
        assert self.out_dtype is not None
        at = self.out_dtype.fields["correlation_id"][1]  # type: ignore[index]
        self.replies.refuse(int.from_bytes(raw[at:at + 16], "big"), MessageSerializationError(detail))

    async def _wait_for_responses(self, deadline: float | None) -> bool:
        """Waits until the inbox may hold something; False on timeout."""
        self.check_receivable()
        self.want_responses()  # may itself find responses: then there is nothing to wait for
        if self.replies.inbox_count:
            return True
        return await wait_in(self.deadlines, self.replies.waiters, deadline)

    def want_responses(self, spin: bool = True) -> None:
        """Someone waits for responses (a device channel makes sure it will be woken)."""

    def ring_when_answered(self) -> None:
        """want_responses() for a request polled for already: no more polling (device channels)."""
        self.want_responses()

    def check_receivable(self) -> None:
        if self.replies.inbox_count:
            return
        if not self.answers:
            raise KernelStateError(f"kernel {self.kernel_id!r} sends no responses "
                                   "(fire-and-forget)")
        if self.state is KernelState.FAILED:
            raise self.failed_error()
        if self.state is KernelState.TERMINATED:
            raise KernelStateError(f"kernel {self.kernel_id!r} is terminated and has no "
                                   "responses left to receive")

    async def _take_when_there(self, max_count: int, timeout: float | None) -> list[Any]:
        """Up to max_count inbox entries' worth, waiting up to `timeout` for the first."""
        deadline = None if timeout is None else self.loop.time() + timeout
        self.poll_responses()
        while not self.replies.inbox_count:
            if not await self._wait_for_responses(deadline):
                return []
            self.poll_responses()
        return self.replies.take(max_count)

    async def receive_many(self, max_count: int, timeout: float | None) -> list[Any]:
        return self.objects_of(await self._take_when_there(max_count, timeout))

    async def receive(self, timeout: float | None) -> Any:
        """One response. From responses collected already it returns without suspending or
        polling the kernel (what is there now was collected after them, so order holds), and
        one that arrived as a struct array is decoded alone, without a numpy slice."""
        replies = self.replies
        deadline = None
        while True:
            if not replies.inbox_count:
                self.poll_responses()
            if replies.inbox_count:
                got = replies.take_one()
                if not isinstance(got, bytes):
                    return got
                codec = self.out_codec
                assert codec is not None  # struct rows come only from a struct layout
                try:
                    return codec.unpack(got)
                except (MessageSerializationError, ValueError) as e:
                    self._undecodable(got, e)  # a dead letter: the next one, then
                    continue
            if deadline is None and timeout is not None:
                deadline = self.loop.time() + timeout
            if not await self._wait_for_responses(deadline):
                raise asyncio.TimeoutError(
                    f"no response from kernel {self.kernel_id!r} within {timeout} s")

    async def receive_array(self, max_count: int, timeout: float | None) -> np.ndarray:
        chunks = await self._take_when_there(max_count, timeout)
        if not chunks:
            assert self.out_dtype is not None
            return np.empty(0, dtype=self.out_dtype)
        arrays = [c if isinstance(c, np.ndarray) else self.pack_response(c) for c in chunks]
        return arrays[0] if len(arrays) == 1 else concatenate(arrays)

    def pack_response(self, msg: Any) -> np.ndarray:
        if self.out_codec is None:
            raise KernelStateError(f"responses of {self.kernel_id!r} have no C layout, so no "
                                   "struct array; use receive_many()")
        return self.out_codec.pack_many([msg])

    def poll_responses(self) -> None:
        """Move responses that arrived meanwhile into the inbox (device channels)."""

    async def request(self, msg: Any, timeout: float | None) -> Any:
        self.check_answers()
        key = msg.message_id.int  # an attribute: .bytes computes 16 bytes each time
        future: asyncio.Future[Any] = self.loop.create_future()
        self.replies.expect(key, future)  # refuses a message sent already
        try:
            if not await self.send(msg, timeout):
                raise QueueFullError(f"kernel {self.kernel_id!r}: the request was dropped by "
                                     f"backpressure '{self.backpressure}'")
        except BaseException as e:
            self.replies.settle(key, gave_up=isinstance(e, asyncio.CancelledError))
            raise
        return await self.await_reply(key, future, timeout)

    def check_answers(self) -> None:
        if not self.answers:
            raise KernelStateError(f"kernel {self.kernel_id!r} sends no responses "
                                   "(fire-and-forget); use send()")

    async def await_reply(self, key: int, future: asyncio.Future[Any], timeout: float | None,
                          polled: bool = False) -> Any:
        """The rest of a request() whose message went out: its reply, which `future` awaits
        under `key`, within `timeout` s; `polled`: it was polled for already."""
        gave_up = False  # a reply may still come: it will be a dead letter
        try:
            if future.done():  # answered at once: no event-loop turn
                return future.result()
            if polled:
                self.ring_when_answered()
            else:
                self.want_responses()
            return await self.deadlines.wait(future, timeout)
        except asyncio.TimeoutError:
            gave_up = True
            raise asyncio.TimeoutError(
                f"no reply from kernel {self.kernel_id!r} within {timeout} s; a late reply "
                "will go to the dead letters") from None
        except asyncio.CancelledError:
            gave_up = True
            raise
        finally:
            self.replies.settle(key, gave_up)

    # -- lifecycle -------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """The one failure path (a crash, a kill, a fault, a hang): supervision decides whether
        a restart follows (runtime/supervisor.py), then what the kernel held is handed over as
        that decision says (dead letters, or carried to the next incarnation)."""
        if self.state in (KernelState.FAILED, KernelState.TERMINATED):
            return
        was = self.state
        decision = self.runtime.supervisor.decide(self)
        self.state = KernelState.FAILED
        self.failure = reason
        if decision is not None:
            self.restart_note = decision.note()
        log.error("kernel %s failed: %s%s", self.kernel_id, reason, self.restart_note)
        carried = self.hand_over(reason, decision)
        self.runtime.supervisor.failed(self, reason, was, decision, carried)

    def hand_over(self, reason: str, decision: Decision | None) -> Carried:
        """What a failed kernel held: here the backlog becomes dead letters and every waiter
        raises (a device kernel may carry them to its next incarnation instead)."""
        from ringgen.runtime.supervisor import Carried

        self._fail_waiters(self.failed_error())
        self._evict_backlog(DeadLetterReason.KERNEL_FAILED,
                            f"kernel failed before processing it: {reason}")
        return Carried()

    def adopt(self, old: Channel, carried: Carried) -> None:
        """A restart: take over the failed incarnation's unread responses, the buffers its
        messages still reference, the ids of requests that gave up (their late replies are
        dead letters), and what it carried (redeliver=True) with the request()s awaiting it."""
        self.replies.adopt_inbox(old.replies)
        self.replies.buffers_in_flight.update(old.replies.buffers_in_flight)
        self.replies.expired.update(old.replies.expired)
        self.replies.pending.update(carried.waiters)
        for entry, priority in carried.entries:
            self.backlog.push(entry, priority)
            self.counters.sent += len(entry) if isinstance(entry, np.ndarray) else 1
        if carried.waiters:
            self.want_responses()
        self.enqueued()

    def device_lost(self) -> str | None:
        """Why the kernel's device cannot run kernels again in this process (None: it can)."""
        return self.lost_device

    def _fail_waiters(self, error: Exception) -> None:
        self.replies.fail_all(error)
        self._space_waiters.wake_all()  # they re-check and raise

    def _evict_backlog(self, reason: DeadLetterReason, detail: str) -> None:
        for entry in self.backlog.clear():
            self.dead_letter(self.message_of(entry), reason, detail, accepted=True)

    def closed(self, detail: str) -> None:
        """After terminate: whatever was never processed goes to the dead letters."""
        self.state = KernelState.TERMINATED
        self._fail_waiters(KernelStateError(f"kernel {self.kernel_id!r} was terminated"))
        self._evict_backlog(DeadLetterReason.TERMINATED, detail)

    def device_counts(self) -> tuple[int, int]:
        """(processed, errors) as the kernel counts them."""
        return self.counters.processed, self.counters.errors

    def bus_counts(self) -> tuple[int, int, int, int]:
        """(reads, read bytes, writes, write bytes) the bus meter counted (rg_bus.h): a device
        kernel's only."""
        return 0, 0, 0, 0

    def in_device(self) -> int:
        return 0

    def lane_depths(self) -> list[int]:
        """Messages in each device lane, lowest priority class first ([] for a host actor)."""
        return []

    def telemetry(self) -> Telemetry:
        processed, errors = self.device_counts()
        p50, p99 = self.counters.percentiles()
        depth = len(self.backlog) + self.in_device()
        reads, read_bytes, writes, write_bytes = self.bus_counts()
        return Telemetry(self.kernel_id, self.state.value, self.backend_name, self.counters.sent,
                         self.counters.received, processed, self.counters.dropped, errors,
                         depth, self.in_flight(), p50, p99, device=self.device, bus_reads=reads,
                         bus_read_bytes=read_bytes, bus_writes=writes, bus_write_bytes=write_bytes)

    def in_flight(self) -> int:
        """Accepted and neither processed nor dropped since."""
        processed, _ = self.device_counts()
        return max(self.counters.sent - self.counters.evicted - processed, 0)

    def _owed(self) -> int:
        """What drain() waits for: what the host sent, and what other kernels routed to it
        (while it runs: a gone kernel's routes are the host's, dead letters)."""
        gone = self.state in (KernelState.FAILED, KernelState.TERMINATED)
        return self.in_flight() + (0 if gone else self.runtime.routes.pending_into(self.kernel_id))

    async def drain(self, timeout: float | None) -> None:
        """Wait until the kernel has processed every message accepted so far (responses may
        still wait in the inbox): what a fire-and-forget sender does before it shuts down.
        KernelFaultError (KernelStateError) if the kernel fails (is terminated) meanwhile: what
        it held is then dead letters, not processed."""
        deadline = None if timeout is None else self.loop.time() + timeout
        nap = 0.0001
        waited = self._owed() > 0
        while self._owed():
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
        if waited:
            self.check_open()  # it ended while we waited: what it held became dead letters

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
