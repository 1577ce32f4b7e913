"""RingKernelRuntime: launch kernels of generated packages (and host actors), send and receive
typed messages with priorities (exact on the host and per block, FIFO within a priority; no
order across a kernel's blocks: README, Order), correlation, backpressure and telemetry.

    async with RingKernelRuntime(pkg) as runtime:        # backend="auto": cuda if usable, else cpu
        await runtime.launch("worker")
        resp = await runtime.request("worker", WorkRequest(data=[4.0]), timeout=5.0)
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ringgen.errors import KernelStateError, ValidationError
from ringgen.runtime import limits
from ringgen.runtime.actors import Actor, HostChannel
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import DEFAULT_LANE_CAPACITY, RingKernel
from ringgen.runtime.backends.cpu import runner_build_from_env
from ringgen.runtime.backends.select import create_kernel, resolve_backend
from ringgen.runtime.buffers import UnifiedBuffer
from ringgen.runtime.channels import Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterStore
from ringgen.runtime.device_channel import DeviceChannel
from ringgen.runtime.events import DEFAULT_CAPACITY, EventBus, EventKind, EventStream
from ringgen.runtime.monitor import MonitorServer
from ringgen.runtime.routes import Routes, request_through
from ringgen.runtime.supervisor import RestartPolicy, Supervisor
from ringgen.runtime.telemetry import Telemetry
from ringgen.runtime.waiting import Deadlines
from ringgen.runtime.watchdog import DEFAULT_HANG_TIMEOUT, MIN_HANG_TIMEOUT, Watchdog
from ringgen.schema.kernels import BACKPRESSURE
from ringgen.schema.package import KernelDef, Package, package_of

log = logging.getLogger("ringgen.runtime")


class Default(enum.Enum):
    """launch(watchdog_s=...) left out: the runtime's hang_timeout."""

    HANG_TIMEOUT = "the runtime's hang_timeout"


def _check_watchdog(name: str, seconds: float | None) -> None:
    if seconds is not None and not seconds >= MIN_HANG_TIMEOUT:
        raise ValidationError(f"{name} must be at least {MIN_HANG_TIMEOUT} s (an idle kernel's "
                              "heartbeat moves every second), or None for no watchdog; got "
                              f"{seconds!r}")


def dtype_in(packages: Sequence[Any], cls: type) -> np.dtype | None:
    """The C struct (numpy dtype) of a message class in the first of `packages` that has one."""
    for pkg in packages:
        dtype = pkg.dtype_of(cls)
        if dtype is not None:
            return dtype
    return None


class RingKernelRuntime(DeadLetterStore):
    """An async context manager that owns the kernels it launches."""

    def __init__(self, *packages: ModuleType | Package, backend: str = "auto",
                 dead_letter_hook: Callable[[DeadLetter], None] | None = None,
                 lane_capacity: int = DEFAULT_LANE_CAPACITY, monitor: bool = False,
                 hang_timeout: float | None = DEFAULT_HANG_TIMEOUT, debug: bool | None = None,
                 race_check: bool | None = None) -> None:
        """`monitor=True` (or RINGGEN_MONITOR=1) serves snapshots to `ringgen top` on an
        owner-only Unix socket while the runtime is entered. `hang_timeout`: seconds a device
        kernel's heartbeat may stand still while it holds requests before the kernel is failed
        as hung (None: never; see runtime/watchdog.py), the default of launch(watchdog_s=).
        `debug` (RINGGEN_DEBUG=1): kernels run as -O0 -g builds, and the log says how to
        attach gdb to each. `race_check`
        (RINGGEN_RACE_CHECK=1): kernels run under ThreadSanitizer, and the first data race
        between threads of a block fails the kernel with both accesses named. Both are
        CPU-backend modes (`auto` picks the CPU then)."""
        _check_watchdog("hang_timeout", hang_timeout)
        self.hang_timeout = hang_timeout
        self.packages = [package_of(p) for p in packages]
        env_build = runner_build_from_env()
        self.cpu_build = ("race-check" if race_check or (race_check is None and env_build == "race-check")
                          else "debug" if debug or (debug is None and env_build == "debug")
                          else "bus-baseline" if env_build == "bus-baseline"  # bench_bus.py's
                          else None)
        self.requested_backend = backend
        self.backend = ""  # "cpu" or "cuda", once resolved (on entering)
        DeadLetterStore.__init__(self, dead_letter_hook)  # dead_letters, add_dead_letter()
        self.lane_capacity = limits.ring_capacity("lane_capacity", lane_capacity)
        self._channels: dict[str, Channel] = {}
        self._buffers: dict[int, tuple[int, UnifiedBuffer]] = {}  # id -> (table slot, buffer)
        self._deadlines: Deadlines | None = None  # made on entering, for the running loop
        self._watchdog: Watchdog | None = None  # likewise
        self._launching: set[str] = set()  # kernel ids with a launch() in progress
        self._launches: set[asyncio.Future[None]] = set()  # each done when its launch() ends
        self._closing = False  # shutdown() began: launches in progress undo themselves
        self.routes = Routes(self)  # connect() / disconnect()
        self.event_bus = EventBus()  # events()
        self.supervisor = Supervisor(self)  # launch(restart=...)
        self._monitor = MonitorServer(self) if monitor or os.environ.get("RINGGEN_MONITOR") == "1" \
            else None

    # -- context ---------------------------------------------------------------------------

    async def __aenter__(self) -> RingKernelRuntime:
        loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(loop)
        self._watchdog = Watchdog(loop)  # it runs a timer only while it watches a kernel
        self._closing = False
        self.event_bus.reopen()
        self.backend = resolve_backend(self.requested_backend, self.cpu_build)
        if self._monitor is not None:
            await self._monitor.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 1.0) -> None:
        """What leaving `async with` does: shutdown(timeout), then close the monitor socket."""
        try:
            await self.shutdown(timeout)
        finally:
            if self._monitor is not None:
                await self._monitor.close()

    @property
    def closing(self) -> bool:
        """shutdown() began: nothing is launched or restarted any more."""
        return self._closing

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.deadlines.loop

    @property
    def deadlines(self) -> Deadlines:
        """The timeouts of every wait on this runtime's loop (one timer for all of them)."""
        if self._deadlines is None:
            raise KernelStateError("use the runtime inside `async with RingKernelRuntime(...)`")
        return self._deadlines

    # -- kernels ---------------------------------------------------------------------------

    def _kernel(self, kernel_id: str) -> KernelDef | None:
        for pkg in self.packages:
            if kernel_id in pkg.kernels:
                return pkg.kernels[kernel_id]
        return None

    def dtype_of(self, cls: type) -> np.dtype | None:
        return dtype_in(self.packages, cls)

    def current(self, kernel_id: str) -> Channel | None:
        """The kernel id's channel (its latest incarnation), if it was ever launched."""
        return self._channels.get(kernel_id)

    def channel(self, kernel_id: str) -> Channel:
        try:
            return self._channels[kernel_id]
        except KeyError:
            raise KernelStateError(f"kernel {kernel_id!r} is not launched; await "
                                   f"runtime.launch({kernel_id!r}) first") from None

    async def launch(self, kernel_id: str, actor: Actor | None = None, activate: bool = True, *,
                     queue_size: int | None = None, backpressure: str | None = None,
                     lane_capacity: int | None = None, restart: str = "never",
                     max_restarts: int = 3, within_s: float = 60.0, backoff_s: float = 0.5,
                     redeliver: bool = False,
                     watchdog_s: float | Default | None = Default.HANG_TIMEOUT,
                     device: int = 0) -> None:
        """Start a kernel of the packages (or `actor`, an `async def f(ctx)` host actor) on
        `device`: a GPU's number on CUDA, a group of runners on the CPU backend.

        restart="on_failure" supervises it (runtime/supervisor.py, docs/operations.md): once
        it FAILED it is launched again after `backoff_s` with its connections, buffers and
        state defaults, up to `max_restarts` times within `within_s` seconds; what it held is
        dead letters, or with `redeliver=True` delivered once more, flagged FLAG_REDELIVERED.
        `watchdog_s`: seconds its heartbeat may stand still while it holds requests before it
        is failed as hung (default: the runtime's hang_timeout; None: never, for debugging)."""
        policy = RestartPolicy(restart, max_restarts, within_s, backoff_s, redeliver)
        device = limits.device(device)
        if watchdog_s is Default.HANG_TIMEOUT:
            watchdog_s = self.hang_timeout
        else:
            _check_watchdog("watchdog_s", watchdog_s)
        if redeliver and (actor is not None or self._is_host_actor(kernel_id)):
            raise ValidationError(f"redeliver=True is for device kernels; {kernel_id!r} is a host "
                                  "actor (restart='on_failure' without redeliver restarts it)")

        async def relaunch(active: bool) -> None:
            await self._start(kernel_id, actor, active, queue_size, backpressure, lane_capacity,
                              watchdog_s, device, restarted=True)

        await self.supervisor.cancel(kernel_id)  # this launch replaces a pending restart
        await self._start(kernel_id, actor, activate, queue_size, backpressure, lane_capacity,
                          watchdog_s, device, restarted=False)
        self.supervisor.register(kernel_id, policy, relaunch)

    def _is_host_actor(self, kernel_id: str) -> bool:
        kdef = self._kernel(kernel_id)
        return kdef is not None and kdef.spec is not None and kdef.spec.host_actor

    async def _start(self, kernel_id: str, actor: Actor | None, activate: bool,
                     queue_size: int | None, backpressure: str | None,
                     lane_capacity: int | None, watchdog_s: float | None, device: int,
                     restarted: bool) -> None:
        """launch() and a supervised restart: one launch per kernel id at a time."""
        if self._closing:
            raise KernelStateError(f"cannot launch {kernel_id!r}: the runtime is shut down")
        if kernel_id in self._launching:
            raise KernelStateError(f"kernel {kernel_id!r} is being launched by another launch() "
                                   "call; await that one instead")
        self._launching.add(kernel_id)
        done: asyncio.Future[None] = self.loop.create_future()
        self._launches.add(done)
        try:
            await self._launch(kernel_id, actor, activate, queue_size, backpressure,
                               lane_capacity, watchdog_s, device, restarted)
        finally:
            self._launching.discard(kernel_id)
            self._launches.discard(done)
            done.set_result(None)

    async def _launch(self, kernel_id: str, actor: Actor | None, activate: bool,
                      queue_size: int | None, backpressure: str | None,
                      lane_capacity: int | None, watchdog_s: float | None, device: int,
                      restarted: bool) -> None:
        old = self._channels.get(kernel_id)
        if old is not None and old.state not in (KernelState.TERMINATED, KernelState.FAILED):
            raise KernelStateError(f"kernel {kernel_id!r} is already running; terminate it first")
        kdef = self._kernel(kernel_id)
        spec = kdef.spec if kdef is not None else None
        if spec is None and actor is None:
            names = sorted(k for p in self.packages for k in p.kernels)
            raise KernelStateError(f"no kernel {kernel_id!r} in the runtime's packages (they have "
                                   f"{', '.join(names) or 'none'}); pass actor= for a host actor")
        queue_size = limits.queue_size(queue_size if queue_size is not None else
                                       spec.queue_size if spec else 1024)
        if lane_capacity is not None:
            limits.ring_capacity("lane_capacity", lane_capacity)
        backpressure = backpressure or (spec.backpressure if spec else "block")
        if backpressure not in BACKPRESSURE:
            raise ValidationError(f"backpressure must be one of {', '.join(BACKPRESSURE)}")
        channel: Channel
        if actor is not None or (spec is not None and spec.host_actor):
            fn = actor or (spec.fn if spec else None)
            assert fn is not None
            channel = HostChannel(self, kernel_id, fn, spec.input if spec else None,
                                  spec.output if spec else None, queue_size, backpressure)
        else:
            assert kdef is not None
            capacity = lane_capacity if lane_capacity is not None else self.lane_capacity
            kernel = await self._start_kernel(kdef, capacity, device)
            for slot, buffer in self._buffers.values():
                kernel.set_buffer(slot, buffer.entry())
            channel = DeviceChannel(self, kdef, kernel, queue_size, backpressure)
            if self._watchdog is not None and watchdog_s is not None:
                self._watchdog.watch(channel, kernel, watchdog_s, channel.holds_requests,
                                     channel.hung)
        if old is not None and old.state is KernelState.FAILED:
            # what the dead incarnation still holds (its region, its eventfd on this loop) goes
            # now, not at shutdown: a kernel restarted for weeks must not pile them up
            await old.terminate(0.1)
        self._channels[kernel_id] = channel
        log.info("launched %s on %s", kernel_id, channel.backend_name)
        await self.routes.launched(kernel_id)  # its sends are bound before it can send
        if not restarted:  # a restart is one RESTARTED event, once it runs as before
            self.event_bus.publish(EventKind.LAUNCHED, kernel_id)
        if activate:
            await channel.activate()
            if not restarted:
                self.event_bus.publish(EventKind.ACTIVATED, kernel_id)

    async def _start_kernel(self, kdef: KernelDef, capacity: int, device: int) -> RingKernel:
        """create_kernel in a worker thread. A kernel that comes up after its launch() was
        cancelled, or while the runtime shuts down, is terminated: no kernel outlives it."""
        made = self.loop.run_in_executor(None, create_kernel, self.backend, kdef, capacity,
                                         self.cpu_build or "release", device)
        try:
            kernel: RingKernel = await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(_terminate_orphan)
            raise
        if self._closing:
            await self.loop.run_in_executor(None, kernel.terminate)
            raise KernelStateError(f"the runtime shut down while {kdef.kernel_id!r} was "
                                   "launching; it was terminated")
        return kernel

    async def activate(self, kernel_id: str) -> None:
        await self.channel(kernel_id).activate()
        self.event_bus.publish(EventKind.ACTIVATED, kernel_id,
                               restarts=self.supervisor.restarts(kernel_id))

    async def deactivate(self, kernel_id: str) -> None:
        await self.channel(kernel_id).deactivate()
        self.event_bus.publish(EventKind.DEACTIVATED, kernel_id,
                               restarts=self.supervisor.restarts(kernel_id))

    async def terminate(self, kernel_id: str, timeout: float = 1.0) -> None:
        """Acknowledged stop within `timeout` s; what was never processed becomes dead letters
        (a supervised kernel is not restarted after it)."""
        self.channel(kernel_id)  # KernelStateError for an id never launched
        await self.supervisor.cancel(kernel_id)  # a restart to come would bring it back
        channel = self.channel(kernel_id)  # the latest incarnation
        if channel.state is KernelState.TERMINATED:
            return
        await channel.terminate(timeout)
        self.event_bus.publish(EventKind.TERMINATED, kernel_id,
                               restarts=self.supervisor.restarts(kernel_id))

    def device_lost(self, culprit: Channel, why: str) -> None:
        """`culprit` lost its device (a hung or faulted CUDA kernel): every other kernel on
        that backend and device fails too, clearly, and none of them is restarted."""
        for channel in list(self._channels.values()):
            if channel is not culprit and isinstance(channel, DeviceChannel) \
                    and channel.backend_name == culprit.backend_name \
                    and channel.device == culprit.device:
                channel.lose(f"its device is lost: {why}; restart the process")

    def events(self, capacity: int = DEFAULT_CAPACITY) -> EventStream:
        """An async iterator of lifecycle events from now on (runtime/events.py): launched,
        activated, deactivated, failed (with the reason), restarted, gave_up, terminated.
        Each stream gets every event; one that falls `capacity` events behind loses the
        oldest, and the next event it reads counts them in `missed`. It ends when the
        runtime closes."""
        return self.event_bus.stream(self.loop, capacity)

    async def shutdown(self, timeout: float = 1.0) -> None:
        """Terminate every kernel within about `timeout` seconds (host actors, then kernels)."""
        self._closing = True
        await self.supervisor.close()  # restarts not yet made are called off
        if self._launches:  # they see _closing and terminate what they started
            await asyncio.wait(set(self._launches))
        if self._watchdog is not None:
            self._watchdog.close()
        # Host actors first: they are the ones that forward to device kernels, and should not
        # find a kernel gone under them.
        hosts = [c for c in self._channels.values() if isinstance(c, HostChannel)]
        devices = [c for c in self._channels.values() if not isinstance(c, HostChannel)]
        for group in (hosts, devices):
            live = [c.state is not KernelState.TERMINATED for c in group]
            results = await asyncio.gather(*(c.terminate(timeout) for c in group),
                                           return_exceptions=True)
            for channel, result, was_live in zip(group, results, live, strict=True):
                if isinstance(result, BaseException):
                    log.error("terminating %s failed: %s", channel.kernel_id, result)
                elif was_live:
                    self.event_bus.publish(EventKind.TERMINATED, channel.kernel_id,
                                           restarts=self.supervisor.restarts(channel.kernel_id))
        self.routes.close()
        self.event_bus.close()

    async def connect(self, src: str, *dsts: str) -> None:
        """src's output goes straight into each dst's input lanes (by its priority), with no
        host hop; several dsts: each gets every message. src "kernel.target" binds the
        kernel's declared send target (sends=) instead; src and dsts may be host actors. The
        message type must be the targets' input type, and a cycle of routes is refused. Kept
        when either side is relaunched."""
        await self.routes.connect(src, dsts)

    async def disconnect(self, src: str) -> None:
        """src's output goes to the host again (what is already routed is still delivered)."""
        await self.routes.disconnect(src)

    # -- messages --------------------------------------------------------------------------

    def send(self, kernel_id: str, msg: Any,
             timeout: float | None = None) -> Coroutine[Any, Any, bool]:
        """Enqueue `msg`; False if backpressure dropped it (it is then a dead letter).

        A coroutine as an `async def` gives (await it): the channel's own, so that a message
        sent one at a time makes one coroutine, not two (its fast path never suspends)."""
        channel = self._channels.get(kernel_id)
        if channel is None:
            return self._when_awaited(kernel_id, lambda c: c.send(msg, timeout))
        return channel.send(msg, timeout)

    async def _when_awaited(self, kernel_id: str,
                            call: Callable[[Channel], Coroutine[Any, Any, Any]]) -> Any:
        """send() or receive() of a kernel not launched when called: the kernel is looked up
        when awaited, as in an `async def` (launched meanwhile: it goes to it; still not:
        KernelStateError)."""
        return await call(self.channel(kernel_id))

    def send_nowait(self, kernel_id: str, msg: Any) -> bool:
        """send() without waiting: False if backpressure dropped `msg` (a dead letter), and
        QueueFullError where send() would wait for room (backpressure 'block')."""
        return self.channel(kernel_id).send_nowait(msg)

    async def send_many(self, kernel_id: str, msgs: Sequence[Any],
                        timeout: float | None = None) -> int:
        """Enqueue `msgs` in order; returns how many were accepted (the others were dropped by
        backpressure: dead letters). With 'reject' the batch is accepted whole or refused
        whole (QueueFullError); a 'block' that times out raises QueueFullError whose
        `accepted` holds the indices of the messages accepted before it."""
        return await self.channel(kernel_id).send_many(msgs, timeout)

    async def send_array(self, kernel_id: str, arr: np.ndarray, timeout: float | None = None) -> int:
        """send_many() of a struct array (the input dtype): rows go in priority order; a
        QueueFullError's `accepted` holds indices into `arr`."""
        channel = self.channel(kernel_id)
        if not isinstance(channel, DeviceChannel):
            raise KernelStateError(f"{kernel_id!r} is a host actor; send it message objects")
        return await channel.send_array(arr, timeout)

    def receive(self, kernel_id: str, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """The next response from the kernel (not one a request() is waiting for); a
        coroutine, the channel's own, as send()."""
        channel = self._channels.get(kernel_id)
        if channel is None:
            return self._when_awaited(kernel_id, lambda c: c.receive(timeout))
        return channel.receive(timeout)

    async def receive_many(self, kernel_id: str, max_count: int,
                           timeout: float | None = None) -> list[Any]:
        """Up to max_count responses, waiting up to `timeout` for the first ([] on timeout)."""
        return await self.channel(kernel_id).receive_many(max_count, timeout)

    async def receive_array(self, kernel_id: str, max_count: int,
                            timeout: float | None = None) -> np.ndarray:
        return await self.channel(kernel_id).receive_array(max_count, timeout)

    async def request(self, kernel_id: str, msg: Any, timeout: float | None = None, *,
                      reply_from: str | None = None) -> Any:
        """Send `msg` and await the response correlated to it: from the kernel itself, or
        from `reply_from`, the end of a pipeline of connected kernels that it starts."""
        if reply_from is not None and reply_from != kernel_id:
            return await request_through(self.channel(kernel_id), self.channel(reply_from), msg,
                                         timeout)
        onward = self.routes.edges.get(kernel_id)
        if onward:  # its answer would go down the route: the caller would wait out its timeout
            raise KernelStateError(
                f"kernel {kernel_id!r} answers into its connection to {', '.join(map(repr, onward))}, "
                f"not to the host: await the end of the pipeline with request({kernel_id!r}, msg, "
                f"reply_from=<its last kernel>), or disconnect({kernel_id!r}) first")
        return await self.channel(kernel_id).request(msg, timeout)

    async def drain(self, kernel_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until the kernel (every kernel: None) has processed all it accepted so far;
        asyncio.TimeoutError after `timeout`, KernelStateError if it is paused (it would never
        finish), KernelFaultError if it failed. Responses stay in the inbox for receive()."""
        if kernel_id is not None:
            await self.channel(kernel_id).drain(timeout)
            return
        # Senders before their targets: a target's drain then counts all that was routed to it.
        deadline = None if timeout is None else self.loop.time() + timeout
        for k in self.routes.upstream_first(list(self._channels)):
            left = None if deadline is None else max(deadline - self.loop.time(), 0.0)
            await self.channel(k).drain(left)

    def kernel_ids(self) -> list[str]:
        """The kernels and host actors launched so far, in launch order (terminated and failed
        ones too, until launched again)."""
        return list(self._channels)

    def telemetry(self, kernel_id: str) -> Telemetry:
        channel = self.channel(kernel_id)
        figures = dataclasses.replace(channel.telemetry(),
                                      restarts=self.supervisor.restarts(kernel_id))
        watchdog = self._watchdog
        still = watchdog.stalled_for(channel) if watchdog is not None else None
        limit = watchdog.timeout_of(channel) if watchdog is not None else None
        if still is None or limit is None:
            return figures
        return dataclasses.replace(figures, heartbeat_age_s=still, stalled=still >= limit)

    def state(self, kernel_id: str) -> KernelState:
        return self.channel(kernel_id).state

    async def read_state(self, kernel_id: str, timeout: float = 5.0) -> list[Any]:
        """A snapshot of a `state=` kernel's state: one object per block, each taken between
        two of that block's messages (running or paused)."""
        channel = self.channel(kernel_id)
        if not isinstance(channel, DeviceChannel):
            raise KernelStateError(f"{kernel_id!r} is a host actor; only device kernels declared "
                                   "with state= have a state to read")
        channel.check_open()
        return await self.loop.run_in_executor(None, channel.kernel.read_state, timeout)

    # -- buffers ---------------------------------------------------------------------------

    def unified_buffer(self, shape: int | tuple[int, ...], dtype: Any = np.float64,
                       device: int = 0) -> UnifiedBuffer:
        """A UnifiedBuffer on this runtime's backend and `device`, registered with it."""
        buffer = UnifiedBuffer(shape, dtype, backend=self.backend or "cpu", device=device)
        self.register(buffer)
        return buffer

    def register(self, buffer: UnifiedBuffer) -> None:
        """Make a buffer visible to every kernel (those launched later too)."""
        if buffer.backend != (self.backend or "cpu"):
            raise KernelStateError(f"a {buffer.backend} buffer cannot serve the "
                                   f"{self.backend} backend; make it with unified_buffer()")
        if buffer.buffer_id in self._buffers:
            return
        used = {slot for slot, _ in self._buffers.values()}
        slot = next((i for i in range(rings.MAX_BUFFERS) if i not in used), None)
        if slot is None:
            raise KernelStateError(f"at most {rings.MAX_BUFFERS} buffers can be registered; "
                                   "unregister one first")
        self._buffers[buffer.buffer_id] = (slot, buffer)
        for channel in self._channels.values():
            if isinstance(channel, DeviceChannel) and not channel.kernel.closed:
                channel.kernel.set_buffer(slot, buffer.entry())

    def unregister(self, buffer: UnifiedBuffer) -> None:
        slot, _ = self._buffers.pop(buffer.buffer_id)
        for channel in self._channels.values():
            if isinstance(channel, DeviceChannel) and not channel.kernel.closed:
                channel.kernel.set_buffer(slot, (0, 0, 0, 0, 0, ""))


def _terminate_orphan(made: asyncio.Future[RingKernel]) -> None:
    """A kernel whose launch() was cancelled while it started: stopped in a thread of its own
    (terminate waits for the kernel's acknowledgement)."""
    if made.cancelled() or made.exception() is not None:
        return
    threading.Thread(target=made.result().terminate, name="ringgen-orphan-terminate").start()
