"""A device ring kernel on the event loop: the backlog feeds the lanes with bounded credit, and
responses come back as the loop polls for them while it awaits them, then through the
kernel's notify eventfd (written by the CPU runner, or by a watcher thread on CUDA). The loop
is the only thread that pops.

Lanes are fed only while the kernel is active, highest priority first within each lane's
class: the backlog keeps the exact 0..255 order, and a late urgent message overtakes whatever
waits in lower lanes because the kernel polls its lanes highest first. What that gives, per
block: FIFO within a priority, and exact priority order among the messages that wait on the
host together; nothing orders the blocks among themselves (README: Order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ringgen.codecs.struct_bounds import check_rows
from ringgen.codecs.structs import VECTOR_MIN, StructCodec
from ringgen.errors import (
    KernelFaultError,
    KernelStateError,
    MessageSerializationError,
    QueueFullError,
    ValidationError,
)
from ringgen.runtime import native_codecs
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import KernelDef, RingKernel
from ringgen.runtime.channels import Admission, Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.keys import KeyRouter
from ringgen.schema import header

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime
    from ringgen.runtime.supervisor import Carried, Decision

log = logging.getLogger("ringgen.runtime")

# The priorities of each lane, lane 0 lowest: low 0-63, below normal 64-127, normal 128,
# above normal 129-191, high 192-255.
LANE_RANGES = ((0, 63), (64, 127), (128, 128), (129, 191), (192, 255))
# How soon a backlog that did not fit the lanes tries again, at the latest: the kernel's bell
# (armed meanwhile) says sooner when it frees lane slots, on the CPU backend.
REFILL_DELAY = 0.0005
POP_BATCH = 4096
# A sender that never suspends keeps the loop from hearing the kernel's progress (its bell,
# the refill timer): after this many admissions to a backlog whose first lane was found full,
# send() looks for it itself (pops the answers kept as rows, which frees the kernel's output
# ring, and feeds the lanes again), so the kernel works on while the sender runs. One look per
# this many messages, rather than a native scan of every lane per message.
LOOK_AFTER = 64
# send() pushes a lone message without ringing the kernel's doorbell, and rings it once the
# loop turns (after the sender's burst), when the lane is full, or after this many quiet
# pushes: a kernel that keeps up with a sender sleeps between its messages, and a futex
# wake-up per message (with the switch to the kernel's thread it causes on a busy core) cost
# the sender more than the rest of its send (issue 11 (d)).
RING_AFTER = 256
DISARM_AFTER = 0.01  # seconds without anyone waiting for responses before the bell is disarmed
# How long the event loop polls for the responses it awaits before it waits for the kernel's
# eventfd; RINGGEN_HOST_SPIN_US changes it (0: never poll).
SPIN_S = float(os.environ.get("RINGGEN_HOST_SPIN_US", 50)) / 1e6
PRIORITY_AT = next(m.offset for m in header.MEMBERS if m.name == "priority")  # in a packed struct
FLAGS_AT = next(m.offset for m in header.MEMBERS if m.name == "flags")
# How long a lone request() waits for its reply in native code, without the GIL, before it
# gives the loop back; the loop's other tasks wait that long at most. RINGGEN_REQUEST_SPIN_US
# changes it (0: never).
REQUEST_SPIN_S = float(os.environ.get("RINGGEN_REQUEST_SPIN_US", 20)) / 1e6
# After this many polls for SPIN_S in a row that found no answer (the kernel's answers take
# longer: a busy machine, a slow handler), the loop waits for the eventfd at once, and polls
# again only every SPIN_RETRY-th time, to notice when answers come quickly again: each poll
# that finds nothing costs SPIN_S of a core that the kernel itself may need.
SPIN_MISSES = 3
SPIN_RETRY = 16
# Past this much of its poll, the loop yields its core between looks (os.sched_yield): on busy
# cores the kernel's runner is often queued on the loop's own core (rg_host.h:
# RG_HOST_SPIN_ALONE_NS, the same for a request's native wait).
SPIN_ALONE_S = 4e-6


NOT_LONE = object()  # lone_request(): not a lone request, nothing done


@dataclasses.dataclass(frozen=True)
class Pending:
    """lone_request(): the request went out, and its reply is awaited under `key`."""

    key: int
    future: asyncio.Future[Any]


class DeviceChannel(Channel):
    def __init__(self, runtime: RingKernelRuntime, info: KernelDef, kernel: RingKernel,
                 queue_size: int, backpressure: str) -> None:
        super().__init__(runtime, info.kernel_id, info.input, info.output, queue_size,
                         backpressure, info.out_dtype)
        self.kernel = kernel
        self.backend_name = kernel.backend_name
        self.device = kernel.device
        self.in_dtype = kernel.in_dtype
        self.out_size = info.out_dtype.itemsize if info.out_dtype is not None else 0
        self._correlation_offset = (info.out_dtype.fields["correlation_id"][1]  # type: ignore[index]
                                    if info.out_dtype is not None else 0)
        # the package's C codecs: a message becomes its slot, a slot its message's header ids,
        # in one native call each (runtime/native_codecs.py)
        self.in_codec = StructCodec(info.input, kernel.in_dtype,
                                    native_codecs.slots_of(info.package_dir, info.input, kernel.in_dtype))
        if info.output is not None and info.out_dtype is not None:
            self.out_codec = StructCodec(
                info.output, info.out_dtype,
                native_codecs.slots_of(info.package_dir, info.output, info.out_dtype))
            # receive() decodes responses kept as struct rows a batch at a time
            self.replies.decode_rows = self.out_codec.native_rows_decoder()
        self._refill: asyncio.TimerHandle | None = None
        self._armed = False
        self._spinning = False
        self._spin_until = 0.0
        self._spin_alone_until = 0.0  # from then on the poll yields the core between looks
        self._spin_misses = 0  # polls for SPIN_S in a row that found no answer
        self._spin_skips = 0  # waits since, on the bell alone
        self._final_counts = (0, 0)  # (processed, errors) as last read from the kernel
        self._final_bus = (0, 0, 0, 0)  # the bus meter as last read from the kernel
        self._next_block = 0  # round robin of the direct path over the blocks
        # Bit l: lane l of every block was found full, and nothing has shown the kernel's
        # progress since (a pop, its bell, the refill timer): enqueued() then skips the native
        # scan of those lanes. Whatever observes progress clears it (feed(), _collect(), the
        # lone request's pop), so the kernel is fed as soon as the host could know it has room.
        self._full_lanes = 0
        self._unlooked = 0  # admissions skipped by enqueued() since the last look (LOOK_AFTER)
        self._unrung = 0  # messages pushed quietly since the doorbell last rang (RING_AFTER)
        # key=: each message goes to the block of its key (runtime/keys.py), not round robin
        self._router = (KeyRouter(info.spec.key, kernel.in_dtype, kernel.grid)
                        if info.spec.key is not None else None)
        self._disarm: asyncio.TimerHandle | None = None
        self._one_block = self._router is None and kernel.grid == 1  # no block to choose
        # a lone request's codecs, looked up once (DeviceChannel.request)
        self._pack_one = self.entry_of if self._buffer_fields else self.in_codec.pack
        self._unpack_one = self.out_codec.unpack if self.out_codec is not None else None
        kernel.on_exit = self._exited
        # Responses, and lane room while a backlog waits (a kernel rings for that too)
        self.loop.add_reader(kernel.notify_fd, self._on_notify)

    # -- sending ---------------------------------------------------------------------------

    def entry_of(self, msg: Any) -> bytes:
        self.buffers_to_device(msg)
        return self.in_codec.pack(msg)

    def message_of(self, entry: Any) -> Any:
        return self.in_codec.unpack(entry) if isinstance(entry, bytes) else entry

    def _block_of(self, msg: Any) -> int:
        """The block a message pushed directly goes to: its key's, or the next in turn."""
        if self._router is not None:
            return self._router.block_of(msg)
        block = self._next_block
        self._next_block = (block + 1) % self.kernel.grid
        return block

    def _push_direct(self, msg: Any, data: bytes) -> bool:
        """Push one packed message into its lane, the doorbell rung once for a burst (_ring);
        False if the lane is full."""
        block = 0 if self._one_block else self._block_of(msg)
        if not self.kernel.push_quiet(block, rings.LANE_OF[msg.priority], data):
            self._ring()  # what it was not woken for fills the lane
            return False
        self._unrung += 1
        if self._unrung == 1:
            self.loop.call_soon(self._ring)
        elif self._unrung >= RING_AFTER:
            self._ring()
        self.counters.sent += 1
        self.replies.accepted(msg.message_id.int)
        return True

    def _ring(self) -> None:
        """Ring the doorbell for the messages pushed quietly since it last rang."""
        if self._unrung and not self.kernel.closed:
            self._unrung = 0
            try:
                self.kernel.ring()
            except KernelStateError:
                pass  # released meanwhile: no kernel is left to wake

    async def send(self, msg: Any, timeout: float | None = None) -> bool:
        """With nothing waiting on the host and room in the lane, a message goes straight into
        its lane, and send() returns without suspending: no backlog round trip, which is most
        of a one-message send's host-side cost."""
        expected_type = type(msg) is self.input_cls  # (kept apart: it would narrow msg)
        if self.state is KernelState.ACTIVE and expected_type:  # what check_open/message check
            data = self._pack_one(msg)
            backlog = self.backlog
            if not backlog.count and self._push_direct(msg, data):
                return True
            # Behind what waits (FIFO), or the lane is full: via the backlog, admitted here
            # without enqueue()'s coroutines unless it must wait for room ('block').
            outcome = self.try_admit(data, msg.priority, msg, 1)
            if outcome is Admission.FULL:
                return await self.enqueue(msg, data, timeout)
            if outcome is Admission.ACCEPTED:
                self.sent(msg)
            return outcome is Admission.ACCEPTED
        return await super().send(msg, timeout)

    async def send_in_conversation(self, msg: Any, timeout: float | None = None) -> bool:
        """The message's slot carries FLAG_CONVERSATION, so the kernel answers it with its
        correlation_id (the conversation's, as for a request popped from a route), and a
        request(..., reply_from=) through a host actor into this kernel gets its answer."""
        if msg.correlation_id is None or type(msg) is not self.input_cls:
            return await self.send(msg, timeout)
        self.check_open()
        self.check_message(msg)
        entry = bytearray(self.entry_of(msg))
        entry[FLAGS_AT] |= header.FLAG_CONVERSATION
        return await self.enqueue(msg, bytes(entry), timeout)

    async def request(self, msg: Any, timeout: float | None) -> Any:
        """A lone request (no other request or receiver waiting, nothing in the backlog) goes
        into its lane and waits for its reply in one native call (push_pop), without the GIL,
        for up to REQUEST_SPIN_S (lone_request); anything else continues as Channel.request."""
        try:
            got = self.lone_request(msg, timeout)
        except KernelFaultError:
            self._on_exit()  # it broke its region and was stopped: it fails now, as a hung one
            raise
        if got is NOT_LONE:
            return await super().request(msg, timeout)
        if isinstance(got, Pending):
            return await self.await_reply(got.key, got.future, timeout, polled=True)
        return got

    def lone_request(self, msg: Any, timeout: float | None) -> Any:
        """The part of request() that needs no event-loop turn: for a lone request, its push
        and the native wait for its reply. Returns the response, decoded, if it came alone
        and names it within the spin (no future, no bookkeeping but the counters); NOT_LONE
        if the request is not lone or its lane is full (nothing was done: request() it); else
        a Pending, whose reply await_reply(key, future, timeout, polled=True) awaits.

        It neither awaits nor schedules anything, so another thread may call it while the
        loop's thread is held still between two iterations (cluster/node.py does, to answer
        a request without a hop to the loop); a KernelFaultError (the kernel broke its
        region) then fails the channel on the loop, as the kernel's exit does. Every microsecond
        of Python here is a microsecond of every request, so the checks are inlined and ordered
        cheapest first."""
        replies = self.replies
        spin = REQUEST_SPIN_S
        if timeout is not None and timeout < spin:
            spin = timeout
        expected_type = type(msg) is self.input_cls  # (kept apart: it would narrow msg)
        if (not expected_type or self.state is not KernelState.ACTIVE
                or replies.pending or replies.waiters or self.backlog.count or spin <= 0
                or self._unpack_one is None):
            return NOT_LONE
        key = msg.message_id.int
        replies.check_sent(key)  # (pending is empty: no need to look there)
        data = self._pack_one(msg)
        if self._armed:  # nobody else awaits responses: no eventfd write to slow the kernel
            self._set_armed(False)
        block = 0 if self._one_block else self._block_of(msg)
        sent = time.perf_counter()
        try:
            raw = self.kernel.push_pop(block, rings.LANE_OF[msg.priority], data, POP_BATCH, spin)
        except KernelFaultError:
            if self.kernel.rings.push_pop_pushed():  # the pop half found the fault: it went in
                self.counters.sent += 1
                replies.remember(key)
            self._exited()  # (thread-safe: cluster/node.py calls this from Ray's thread)
            raise
        if raw is None:
            return NOT_LONE  # the lane is full: via the backlog
        self.counters.sent += 1
        replies.remember(key)  # not sampled: every request's round trip is timed
        if len(raw) == self.out_size:
            try:
                response = self._unpack_one(raw)
            except (MessageSerializationError, ValueError):
                pass  # undecodable: _arrived makes it a dead letter and the request raises
            else:
                corr = response.correlation_id
                if corr is not None and corr.int == key:  # (the flag says the bytes are one)
                    replies.answered(key, sent)
                    return response
        future: asyncio.Future[Any] = self.loop.create_future()
        replies.wait_for(key, future, sent)
        if raw:
            self._arrived(raw)
            if len(raw) == POP_BATCH * self.out_size:
                self._collect()
        return Pending(key, future)

    async def send_many(self, msgs: Sequence[Any], timeout: float | None = None) -> int:
        """A batch that fits the queue is packed at once and enqueued like an array; otherwise,
        and for fewer than VECTOR_MIN messages (admitting those one by one costs less than an
        array's sort and split), one by one under the backpressure rules."""
        if len(msgs) < VECTOR_MIN or len(self.backlog) + len(msgs) > self.queue_size:
            return await super().send_many(msgs, timeout)
        self.check_open()
        # One native call checks every message's class and packs the batch; a class it packs
        # has no buffer fields (codecs/struct_plan.py), so there is nothing to publish.
        rows = self.in_codec.pack_native(msgs)
        if rows is None:
            for m in msgs:
                self.check_message(m)
            for m in msgs:  # only once all are checked: a refused batch holds no buffer
                self.buffers_to_device(m)
            rows = self.in_codec.pack_many(msgs)
        if self.answers:
            self.replies.accepted_many(msgs)
        return await self.send_array(rows, timeout)

    def _as_input_rows(self, arr: np.ndarray) -> np.ndarray:
        """Rows of the same fields in another layout (np.concatenate, arr[["a", "b"]] and
        friends drop the padding of a C struct's dtype) copied into the kernel's own layout;
        ValidationError naming the first field that differs otherwise."""
        want = self.in_dtype
        name = self.in_codec.cls.__name__
        if arr.dtype.names is None:
            raise ValidationError(f"kernel {self.kernel_id!r} takes struct rows of {name} "
                            f"(pkg.new_array({name!r}, n) makes them), not an array of {arr.dtype}")
        missing = [f for f in want.names or () if f not in arr.dtype.names]
        extra = [f for f in arr.dtype.names if f not in (want.names or ())]
        changed = [f"{f} is {arr.dtype[f]}, not {want[f]}" for f in want.names or ()
                   if f not in missing and arr.dtype[f] != want[f]]
        problems = ([f"it lacks {', '.join(missing)}"] if missing else []) + (
            [f"it has no field {', '.join(extra)} of {name}"] if extra else []) + changed
        if problems:
            raise ValidationError(f"kernel {self.kernel_id!r} takes struct rows of {name}, and this "
                            f"array's dtype differs: {'; '.join(problems)}")
        rows = np.zeros(len(arr), dtype=want)
        for f in want.names or ():
            rows[f] = arr[f]
        return rows

    async def send_array(self, arr: np.ndarray, timeout: float | None) -> int:
        """Enqueue struct rows (the input dtype) without a Python object per message; rows go
        in priority order, FIFO within a priority. Returns how many were accepted. With
        'reject' the array goes in whole or not at all; a 'block' that times out raises
        QueueFullError with the indices (into `arr`) of the rows accepted before it."""
        self.check_open()
        if isinstance(arr, np.ndarray) and arr.dtype != self.in_dtype:
            arr = self._as_input_rows(arr)
        arr = check_rows(self.in_codec.cls, self.in_dtype, arr)
        if not len(arr):
            return 0
        self.check_batch_fits(len(arr))
        priorities = arr["priority"]
        if (priorities == priorities[0]).all():  # one priority, as most batches: no sort
            order = np.arange(len(arr))
            rows = arr.copy()  # a copy all the same: the caller may reuse its array at once
            bounds = np.empty(0, dtype=np.intp)
        else:
            order = np.argsort(-priorities.astype(np.int16), kind="stable")
            rows = np.ascontiguousarray(arr[order])
            bounds = np.flatnonzero(np.diff(priorities[order].astype(np.int16))) + 1
        accepted, at = 0, 0  # `at`: where the piece starts in `rows`
        taken: list[np.ndarray] = []  # the indices into `arr` of the pieces accepted
        for chunk in np.split(rows, bounds):
            p = int(chunk["priority"][0])
            for start in range(0, len(chunk), self.queue_size):  # each piece can fit
                piece = chunk[start:start + self.queue_size]
                try:
                    admitted = await self.admit(piece, p, piece, len(piece), timeout)
                except QueueFullError as e:
                    raise QueueFullError(str(e), accepted=np.sort(np.concatenate(
                        [*taken, np.empty(0, dtype=order.dtype)]))) from None
                if admitted:
                    accepted += len(piece)
                    taken.append(order[at:at + len(piece)])
                at += len(piece)
        self.feed()  # a batch is worth a fresh look at every lane (the marks serve lone sends)
        return accepted

    def enqueued(self) -> None:
        """New messages wait in the backlog. Lanes found full since the kernel last showed
        progress are not looked at again: only the kernel frees their slots, and whatever
        sees a sign of that (a pop of its responses, its bell, the refill timer) calls feed(),
        which looks again; a sender that never suspends looks itself every LOOK_AFTER
        admissions. It thus costs an append per message once the lanes are full, not a native
        scan of every lane (which also took the kernel's core)."""
        backlog = self.backlog
        if (self._full_lanes and backlog.count
                and self._full_lanes >> rings.LANE_OF[backlog.highest()] & 1):
            # the first lane to feed is full: nothing below it may go either
            self._unlooked += 1
            if self._unlooked >= LOOK_AFTER:  # look for the kernel's progress
                # Its answers are popped only while they are kept as rows (a copy): routing
                # them to request()s would decode each one mid-send. The lanes are looked at
                # afresh either way (feed() clears the marks).
                if not self.replies.wants_objects:
                    self._collect()
                self.feed()
            return
        self._feed()

    def feed(self) -> None:
        """Move backlog into the lanes, as far as their free slots go, every lane looked at
        afresh (the kernel may have taken from them)."""
        self._full_lanes = self._unlooked = 0
        self._feed()

    def _feed(self) -> None:
        """feed(), skipping the lanes in _full_lanes. Whenever it leaves a backlog, the bell is
        armed and the refill timer set, so a lane marked full is looked at again soon even if
        nobody pops."""
        if self.state is not KernelState.ACTIVE or not len(self.backlog):
            return
        if self._router is not None:
            self._feed_keyed(self._router)
        else:
            self._feed_any_block()
        self.space_freed()
        if len(self.backlog):
            self._await_room()
            if self._refill is None:
                self._refill = self.loop.call_later(REFILL_DELAY, self._refill_now)

    def _await_room(self) -> None:
        """The backlog did not fit the lanes: be woken when the kernel frees a slot (it rings
        the out bell as it finishes requests whose responses do not come here), rather than
        by the refill timer alone, which would pace a connected kernel's input."""
        if self._armed or self.kernel.closed:
            return
        self.kernel.arm(True)
        self._armed = True
        self.loop.call_soon(self.feed)  # room made before the arming rang nothing

    def _feed_keyed(self, router: KeyRouter) -> None:
        """One message at a time into the lane of its key's block; a full lane holds up the
        messages behind it (of any key), which keeps FIFO per key within a priority."""
        kernel = self.kernel
        for lane in range(4, -1, -1):
            lo, hi = LANE_RANGES[lane]
            while not self._full_lanes >> lane & 1 and self.backlog.has(lo, hi):
                entry = self.backlog.peek(lo, hi)
                if not kernel.push(router.block_of_struct(entry), lane, self._contiguous([entry])):
                    self._full_lanes |= 1 << lane  # the head's lane; it stays the head
                    break
                self.backlog.take(1, lo, hi)
            if self.backlog.has(lo, hi):
                break  # as in _feed_any_block: lower lanes wait while higher messages do

    def _feed_any_block(self) -> None:
        kernel = self.kernel
        for lane in range(4, -1, -1):
            lo, hi = LANE_RANGES[lane]
            if not self.backlog.has(lo, hi):
                continue
            if self._full_lanes >> lane & 1:
                break  # full when last looked at, and the kernel has not shown progress since
            for block in range(kernel.grid):
                free = kernel.lane_free(block, lane)
                if free <= 0:
                    continue
                entries = self.backlog.take(free, lo, hi)
                pushed = kernel.push(block, lane, self._contiguous(entries))
                assert pushed == sum(len(e) if isinstance(e, np.ndarray) else 1
                                     for e in entries), "only this channel pushes into its lanes"
                if not self.backlog.has(lo, hi):
                    break
            if self.backlog.has(lo, hi):
                # Higher priorities still wait on the host: feeding a lower lane now would let
                # the kernel take a lower message first. The lower lanes wait for a refill.
                self._full_lanes |= 1 << lane  # every block's lane of this class is full
                break

    def _refill_now(self) -> None:
        self._refill = None
        self.poll_responses()
        self.feed()

    @staticmethod
    def _contiguous(entries: list[Any]) -> np.ndarray | bytes:
        """One buffer of structs for one native push."""
        if len(entries) == 1:
            e = entries[0]
            return e if isinstance(e, bytes) else np.ascontiguousarray(e)
        return b"".join(e if isinstance(e, bytes) else e.tobytes() for e in entries)

    # -- responses -------------------------------------------------------------------------

    def poll_responses(self, clear_notify: bool = False) -> None:
        self._collect(clear_notify)
        self.feed()

    def _collect(self, clear_notify: bool = False) -> None:
        """Pop what the kernel answered into the replies (a kernel without output answers
        nothing, but its bell may have rung: the eventfd is cleared all the same)."""
        if self.kernel.closed or (self.output_cls is None and not clear_notify):
            return
        while True:
            try:
                raw = self.kernel.pop_bytes(POP_BATCH, 0.0, clear_notify)
            except KernelFaultError:  # it broke its region and was stopped: its exit fails us
                return
            clear_notify = False
            if not raw:
                break
            self._arrived(raw)
            if len(raw) < POP_BATCH * self.out_size:
                break

    def _arrived(self, raw: bytes) -> None:
        """Responses as popped: kept as a struct array when no request() or buffer waits for
        one (a receive_array takes them as they are), else routed as objects."""
        self._full_lanes = 0  # the kernel answered: it has taken from its lanes
        if not self.replies.wants_objects:
            if self.replies.sent_at:
                assert self.out_codec is not None  # responses come only with an output
                self.replies.time_arrivals(self.out_codec.correlation_keys(raw))
            self.replies.deliver_rows(np.frombuffer(bytearray(raw), dtype=self.out_dtype))
        else:
            self.replies.route(self.unpack_rows(raw))

    def ring_when_answered(self) -> None:
        """A lone request polled for its reply in native code for its spin and none came: the
        kernel's eventfd wakes the loop from here on (the loop's own polling would only spin
        longer, on the core the kernel may need)."""
        if self.output_cls is not None and not self.kernel.closed:
            self._set_armed(True)

    def want_responses(self, spin: bool = True) -> None:
        """Someone awaits responses. The loop first polls for them for SPIN_S: an answer that
        comes within it is found an iteration after it lands, rather than after the kernel's
        eventfd write and the loop's wake-up (several microseconds, tens on a busy machine).
        The bell is disarmed meanwhile: the kernel writes no eventfd for what the loop finds.
        Polls that keep finding nothing are mostly skipped (SPIN_MISSES). `spin=False`: the
        answer is known to take longer (it crosses other kernels first), so the loop would only
        take a core from them: the bell wakes it."""
        if self.output_cls is None or self.kernel.closed:
            return
        if not spin:
            if not self._spinning:
                self._set_armed(True)
            return
        now = time.perf_counter()
        self._spin_until = now + SPIN_S
        if self._spinning:
            return
        self._spin_alone_until = now + SPIN_ALONE_S
        if self._spin_misses >= SPIN_MISSES:  # polling finds nothing lately: the bell, mostly
            self._spin_skips += 1
            if self._spin_skips % SPIN_RETRY:
                if not self._armed:
                    self._set_armed(True)
                return
        if SPIN_S > 0:
            self._set_armed(False)
            self._spinning = True
            self.loop.call_soon(self._spin)
        else:
            self._set_armed(True)

    def _spin(self) -> None:
        if not self.kernel.closed and self.replies.awaited:
            self.poll_responses()
        if self.kernel.closed or not self.replies.awaited:
            self._spinning = False
            self._spin_misses = self._spin_skips = 0  # answered while polling: poll next time
        elif (now := time.perf_counter()) < self._spin_until:
            if now >= self._spin_alone_until:
                os.sched_yield()
            self.loop.call_soon(self._spin)
        else:  # the answer takes a while: the kernel's eventfd wakes the loop from here on
            self._spinning = False
            self._spin_misses += 1
            self._set_armed(True)

    def _set_armed(self, armed: bool) -> None:
        if armed == self._armed or self.kernel.closed:
            return
        self.kernel.arm(armed)
        self._armed = armed
        if armed:
            self.poll_responses()  # what came before the arming rang nothing

    def _on_notify(self) -> None:
        self.poll_responses(clear_notify=True)
        # Stay armed while responses are wanted, and a little longer: without polling
        # (SPIN_S = 0), a caller that asks again at once then finds the bell armed.
        if self._armed and self._disarm is None:
            self._disarm = self.loop.call_later(DISARM_AFTER, self._disarm_if_idle)

    def _disarm_if_idle(self) -> None:
        self._disarm = None
        if not self._armed or self.kernel.closed:
            return
        if self.replies.awaited or len(self.backlog):
            self._disarm = self.loop.call_later(DISARM_AFTER, self._disarm_if_idle)
            return
        self._set_armed(False)

    def _exited(self) -> None:  # from the backend's thread
        try:
            self.loop.call_soon_threadsafe(self._on_exit)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _on_exit(self) -> None:
        """The kernel's process ended: unexpectedly unless we terminated it."""
        if self.state in (KernelState.TERMINATED, KernelState.FAILED):
            return
        self.fail(self.kernel.failure() or "the kernel exited without being terminated")

    def holds_requests(self) -> bool:
        """Requests are in the kernel's lanes or in its handlers (not merely in the backlog)."""
        return self.in_flight() - len(self.backlog) > 0

    def hung(self, reason: str) -> None:
        """The watchdog found the kernel hung: it is stopped and fails as a crashed one does
        (on CUDA that loses the device: the backend says so through device_lost())."""
        if self.state in (KernelState.TERMINATED, KernelState.FAILED):
            return
        self.kernel.hung(reason)
        self._on_exit()

    def lose(self, reason: str) -> None:
        """Another kernel lost this one's device: it is stopped as far as the backend can."""
        if self.state in (KernelState.TERMINATED, KernelState.FAILED):
            return
        self.lost_device = reason
        self.kernel.abandon(reason)
        self._on_exit()

    def device_lost(self) -> str | None:
        return self.lost_device or self.kernel.device_lost()

    def hand_over(self, reason: str, decision: Decision | None) -> Carried:
        """What it answered before it died is delivered; then what it held goes as `decision`
        says: dead letters (the backlog, the requests left in its lanes, and the ones it took
        and never answered), or with redeliver=True carried to the next incarnation. Called
        once the kernel runs no more: a live one's lanes are its own."""
        try:
            self._collect()
        except Exception:  # nothing may keep a dead kernel looking alive
            log.exception("kernel %s: collecting its last responses failed", self.kernel_id)
        if decision is None or not decision.policy.redeliver:
            carried = super().hand_over(reason, decision)
            self._evict_unfinished(DeadLetterReason.KERNEL_FAILED, f"the kernel failed: {reason}")
            return carried
        return self._carry(reason)

    def _carry(self, reason: str) -> Carried:
        """redeliver=True: the requests it took and never answered (flagged redelivered,
        unless they were already: those are dead letters), then those it never took, then
        the backlog, in that order, with the request()s that wait on them."""
        from ringgen.runtime.supervisor import Carried

        carried = Carried()
        held, untaken = self._readable(*self.kernel.unfinished(), reason)
        again = (held["flags"] & header.FLAG_REDELIVERED) != 0
        for row in held[again]:
            raw = row.tobytes()
            self.dead_letter(self.in_codec.unpack(raw), DeadLetterReason.KERNEL_FAILED,
                             f"the kernel failed: {reason}, while handling it; it had been "
                             "redelivered once already, so it is not redelivered again",
                             accepted=True)
            self.replies.refuse(int.from_bytes(raw[:16], "big"), self.failed_error())  # the message_id leads
        flagged = held[~again].copy()
        flagged["flags"] |= header.FLAG_REDELIVERED
        for rows in (flagged, untaken):
            carried.entries += [(row.tobytes(), int(row["priority"])) for row in rows]
        carried.entries += [(e, int(e["priority"][0]) if isinstance(e, np.ndarray)
                             else e[PRIORITY_AT]) for e in self.backlog.clear()]
        size = self.in_dtype.itemsize
        for entry, _ in carried.entries:
            raw = entry if isinstance(entry, bytes) else entry.tobytes()
            for at in range(0, len(raw), size):
                key = int.from_bytes(raw[at:at + 16], "big")  # the message_id leads the header
                future = self.replies.pending.pop(key, None)
                if future is not None:
                    carried.waiters[key] = future
            self.counters.evicted += len(raw) // size  # accepted; this incarnation is done
        self._fail_waiters(self.failed_error())  # those whose message is not carried
        return carried

    def _readable(self, held: np.ndarray, untaken: np.ndarray,
                  reason: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows read back from the region that still decode: a kernel that wrote over its
        lanes may have left rows no handler should be given again (those are dead letters,
        as the structs they are)."""
        out = []
        for rows in (held, untaken):
            try:
                self.in_codec.unpack_many(rows)
                out.append(rows)
            except (MessageSerializationError, ValueError):
                self.dead_letter(rows, DeadLetterReason.KERNEL_FAILED,
                                 f"the kernel failed: {reason}; these requests were written "
                                 "over in its lanes, so they are not redelivered", accepted=True)
                out.append(rows[:0])
        return out[0], out[1]

    def _evict_unfinished(self, reason: DeadLetterReason, why: str) -> None:
        """Once the kernel has exited, what it never finished goes to the dead letters (as
        messages): the requests it took and never answered, then those it never took."""
        held, untaken = self.kernel.unfinished()
        for rows, detail in ((held, f"{why}, while handling it: no response went out, but its "
                                    "handler may have run (in part or whole), and sends it made "
                                    "may have gone out"),
                             (untaken, f"{why}, before processing it")):
            try:
                msgs = self.in_codec.unpack_many(rows)
            except (MessageSerializationError, ValueError):  # a kernel scribbled over them
                self.dead_letter(rows, reason, detail, accepted=True)  # as the structs
                continue
            for msg in msgs:
                self.dead_letter(msg, reason, detail, accepted=True)

    # -- lifecycle -------------------------------------------------------------------------

    async def activate(self) -> None:
        self.check_open()
        await self.loop.run_in_executor(None, self.kernel.activate)
        self.state = KernelState.ACTIVE
        self.feed()

    async def deactivate(self) -> None:
        self.check_open()
        await self.loop.run_in_executor(None, self.kernel.deactivate)
        self.state = KernelState.PAUSED

    async def terminate(self, timeout: float) -> None:
        if self.state is KernelState.TERMINATED:
            return
        was_failed = self.state is KernelState.FAILED
        self.state = KernelState.TERMINATED  # from here on its exit is expected
        self.kernel.on_exit = None
        for timer in (self._refill, self._disarm):
            if timer is not None:
                timer.cancel()
        try:
            await self.loop.run_in_executor(None, self.kernel.stop, timeout)
            if not was_failed:
                self._collect()
                self._evict_unfinished(DeadLetterReason.TERMINATED, "the kernel was terminated")
        finally:
            self.loop.remove_reader(self.kernel.notify_fd)
            self.device_counts()  # the last figures, before the counters go away
            self.kernel.release()
        self.closed("kernel terminated before processing it")

    def device_counts(self) -> tuple[int, int]:
        if self.kernel.closed:
            return self._final_counts
        status = self.kernel.status()
        self._final_counts = (sum(s.processed for s in status), sum(s.errors for s in status))
        self._final_bus = (sum(s.bus_reads for s in status), sum(s.bus_read_bytes for s in status),
                           sum(s.bus_writes for s in status), sum(s.bus_write_bytes for s in status))
        return self._final_counts

    def bus_counts(self) -> tuple[int, int, int, int]:
        """As of the last device_counts(), which telemetry() reads just before (one status read)."""
        return self._final_bus

    def in_flight(self) -> int:
        """As Channel's, less what came over routes from other kernels (which the host did not
        send); routed_in is read after processed, so the difference never counts too many."""
        processed, _ = self.device_counts()
        from_host = processed - self.kernel.routed_in()
        return max(self.counters.sent - self.counters.evicted - from_host, 0)

    def in_device(self) -> int:
        return sum(self.lane_depths())

    def lane_depths(self) -> list[int]:
        if self.kernel.closed:
            return [0] * 5
        return [sum(self.kernel.lane_size(b, lane) for b in range(self.kernel.grid))
                for lane in range(5)]
