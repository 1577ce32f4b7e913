"""Connections between actors: `runtime.connect(src, *dsts)` sends src's output straight into
each dst's input (fan-out when several), `disconnect(src)` back to the host. A source is a
kernel's output ("stage2") or one of its declared send targets ("worker.audit": sends=).

A route is the memory of rg_route.h: one SPSC ring per (sender block, target block, priority
class). On the CPU backend a shared-memory file both runner processes map; on the cuda backend
(backends/cuda.py: placement) the GPU's memory between two kernels of one GPU, the target's
between GPUs that reach each other's memory, else pinned host memory the host drains (into a
host actor, the dead letters, or the target on a GPU the sender cannot reach: the host forwards
into its lanes, under its backpressure). The host only
writes the kernels' link tables and waits for every block to acknowledge them, so once
connect() returns every block sends into the routes, and once disconnect() returns none does
any more. A route stays attached to its target until the runtime closes: what is in it when
the sender disconnects is still delivered.

Host actors are connect ends too. A device kernel's route into a host actor is drained by the
host into the actor's queue, as far as the queue has room (a full actor makes the sender
wait); a host actor's output and send targets are forwarded by its ctx.send (runtime/actors.py)
to whatever they are connected to.

A send target bound to nothing is bound to the host's dead letters: a route the host drains
into UNBOUND dead letters, so a send never waits for a connect that never comes. Every
device kernel with sends= has its targets bound (to kernels or to the dead letters) before it
is activated.

A target that fails or is terminated takes nothing more from its routes; from then on the host
is their consumer and turns everything in them (the request it held, what was queued, and
what is sent later) into dead letters of the target, so that the senders keep running and
nothing vanishes; a request(..., reply_from=) waiting for one of them raises KernelFaultError.
A route in GPU memory the host cannot drain while kernels push into it: it is retired first
(`_retire`): its senders are switched to a pinned route the host drains, and once every one of
their blocks acknowledged, what the old one holds is read back and dead-lettered. (A kernel
that faults on a GPU loses that GPU's context, so every kernel on it fails with it; what its
GPU routes held cannot be read back and is reported in one dead letter per route.)

A send that a terminate interrupts while it waits for room in a full route is not lost: the
sender leaves it in the route's abandoned rings (rg_route.h), which the host drains into
TERMINATED dead letters of the sender once the sender has exited (or is launched again, or
the runtime closes). The sender's batch stops there (rg_kernel.h: rg_outs::stopped): its
requests not yet answered stay in its input, dead letters as themselves, so a block abandons
one message's copies at most and those rings do not fill; were they full even so (a scribble),
each message they could not take is counted, and reported in a dead letter without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import logging
import mmap
import os
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ringgen.codecs.structs import StructCodec
from ringgen.errors import (
    BackendUnavailableError,
    KernelFaultError,
    KernelStateError,
    MessageSerializationError,
    QueueFullError,
)
from ringgen.runtime.actors import HostChannel
from ringgen.runtime.backends import rings
from ringgen.runtime.channels import Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.device_channel import DeviceChannel
from ringgen.runtime.shm import path_of, shared_memory
from ringgen.schema import header

if TYPE_CHECKING:
    from ringgen.runtime.backends.base import RingKernel
    from ringgen.runtime.backends.cuda import RouteMemory, Rows
    from ringgen.runtime.runtime import RingKernelRuntime

log = logging.getLogger("ringgen.runtime")

MAX_LINKS = 8  # RG_MAX_LINKS: routes out of, and into, one kernel
ROUTE_CAPACITY = 64  # slots of each (sender block, target block, lane) ring
ACK_TIMEOUT = 5.0  # seconds for every block to apply new links (it does so between messages)
# How often the host drains the routes it consumes: into a host actor, often (its messages are
# a pipeline's traffic); else (dead letters of an unbound send target or a gone target, the
# error paths) seldom, so that a pipeline of device kernels alone does not wake the loop
# a thousand times a second.
DRAIN_PERIOD = 0.001
SLOW_DRAIN_PERIOD = 0.02
# Key kinds of rg_route.h
KEY_NONE, KEY_INT, KEY_UINT, KEY_TEXT = 0, 1, 2, 3
SCOPE_DEVICE = 0  # RG_ROUTE_DEVICE: the CPU backend ignores the scope
GONE = (KernelState.FAILED, KernelState.TERMINATED)
_NO_LINK = (0, 0, 0, 0, 0, 0, 0, 0, 0, "", 0, 0)  # set_link's arguments of an empty entry


@dataclass(frozen=True)
class End:
    """A connect source: a kernel's output (port 0) or its send target `name` (port p >= 1,
    the p-th of its sends=), and the message class that goes out of it (None: any)."""

    name: str
    channel: Channel
    port: int
    cls: type | None


def sends_of(channel: Channel) -> tuple[tuple[str, type], ...]:
    """A kernel's declared send targets (sends=), in order: port p is the p-th."""
    if isinstance(channel, DeviceChannel):
        return channel.kernel.info.spec.sends
    if isinstance(channel, HostChannel):
        return channel.sends
    return ()


@dataclass
class _Route:
    route_id: int
    src: str  # the End's name
    dst: str  # the target's kernel_id; "" for the dead letters of an unbound send target
    fd: int  # CPU: the memory file, kept open: a runner launched later opens it by `path`
    path: str
    memory: mmap.mmap | None
    rings: rings.Route | None  # the host's view; None: GPU memory (see `device`)
    anchor: Any  # keeps the buffer export alive while `rings` uses its address
    port: int
    codec: StructCodec  # what travels in it, for the host when it is the consumer
    target: Channel | None = None  # the channel that takes from it (none: the dead letters)
    device: RouteMemory | None = None  # cuda: where it lives (backends/cuda.py)
    scope: int = SCOPE_DEVICE  # RG_ROUTE_* of its atomics on a GPU
    grids: tuple[int, int] = (1, 1)  # (sender's, target's)
    lost_seen: int = 0  # rg_route::lost as last reported
    abandoned_of: Channel | None = None  # the exited sender whose abandoned sends were taken
    # GPU memory: the abandoned rings of a copy the host drained and could not write back
    # (their heads: what was reported), restored into the next copy so nothing is reported twice.
    unwritten: bytes | None = None
    # The connection it carries (rg_link::edge_id): its first route's id, kept by a retired
    # route's successor, so that a send following new links mid-way pushes into it once.
    edge_id: int = 0

    def __post_init__(self) -> None:
        self.edge_id = self.edge_id or self.route_id

    def host_address(self) -> int:
        """Where the host reads and writes a route in host memory: the CPU backend's memory
        file as this process maps it, or pinned memory (cuda)."""
        if self.anchor is not None:
            return ctypes.addressof(self.anchor)
        assert self.device is not None and self.device.host
        return self.device.host

    def host_forwards(self) -> bool:
        """The host is the consumer of a route into a device kernel: pinned memory between
        GPUs that cannot reach each other (cuda), drained into the target's lanes."""
        return self.device is not None and self.device.forwarded


def route_geometry(capacity: int, slot: int) -> tuple[int, int]:
    """(bytes of an rg_route header, bytes of one of its rings), from rg_route_init's sizes:
    a route of s x d senders and targets is 2 headers and (s * d + s) * LANES rings (its own,
    then its abandoned rings, one target block each)."""
    size = rings.route_type().size
    one, two = size(1, 1, capacity, slot), size(1, 2, capacity, slot)
    stride = (two - one) // rings.LANES
    return (one - 2 * rings.LANES * stride) // 2, stride


def abandoned_offset(grids: tuple[int, int], capacity: int, slot: int) -> int:
    """Where a route's abandoned rings (an rg_route of their own) start in its memory."""
    header, stride = route_geometry(capacity, slot)
    return header + grids[0] * grids[1] * rings.LANES * stride


def ring_headers(grids: tuple[int, int], capacity: int, slot: int) -> tuple[Rows, Rows]:
    """The rows of a route's memory that hold its rings' `done` words, then those that hold
    their tails, for RouteMemory.read_rows: copied in that order (two copies, the second
    after the first), a ring's count from them is not below what was pending when the first
    began, as `done` only grows towards the tail."""
    from ringgen.runtime.backends.cuda import Rows

    header, stride = route_geometry(capacity, slot)
    count = grids[0] * grids[1] * rings.LANES
    return (Rows(header + rings.RING_DONE_AT, 8, stride, count),
            Rows(header + rings.RING_TAIL_AT, 8, stride, count))


def lost_bound(grids: tuple[int, int], capacity: int) -> int:
    """The most messages a route's senders can count as lost between two looks of the host:
    a generous bound (every lane of every sender block, a route's capacity each), well below
    what a scribbled counter makes the host loop over."""
    return grids[0] * rings.LANES * capacity


def take_abandoned(address: int, grids: tuple[int, int], capacity: int, slot: int,
                   lost_seen: int) -> tuple[bytes, int]:
    """What the senders of the route laid out at `address` abandoned at terminate (struct
    bytes, taken: the host is those rings' one consumer, so the senders may push meanwhile),
    and its `lost` count now (the messages that found them full)."""
    view = rings.route_type()(address + abandoned_offset(grids, capacity, slot), grids[0], 1,
                              capacity, slot, False)
    lost = ctypes.c_uint64.from_address(address + rings.ROUTE_LOST_AT).value
    return view.drain(), max(lost, lost_seen)


@dataclass
class _LinkTable:
    """The host's hold on one kernel's links (rg_route.h). A block copies the table when it
    sees a new version, so the host rewrites it only while no block can be copying it: one
    rewrite at a time (a retire and a connect may overlap on the loop), and only once every
    block acknowledged the version before; else a block could apply half of one table and half
    of the next."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    version: int = 0  # the last version published (0: none yet)


@dataclass
class Routes:
    runtime: RingKernelRuntime
    edges: dict[str, list[str]] = field(default_factory=dict)  # End name -> dsts, in order
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _drainer: asyncio.TimerHandle | None = None
    _retiring: set[int] = field(default_factory=set)  # route ids being retired (_retire)
    # The pinned routes that replace GPU routes being retired, by the same key as _routes: in
    # their senders' links already, in _routes once every sender block acknowledged them.
    _successors: dict[tuple[str, str], _Route] = field(default_factory=dict)
    # Per launched kernel (a relaunch is a new one, with fresh links), while it lives.
    _tables: weakref.WeakKeyDictionary[RingKernel, _LinkTable] = field(
        default_factory=weakref.WeakKeyDictionary)
    # Successors whose retire a relaunch of the target cancelled (`launched`): drained into the
    # old target's dead letters like any successor (a sender may still push into one until it
    # acknowledges its links back to the route) and freed at close.
    _dropped: list[_Route] = field(default_factory=list)
    # Route ids a kernel wrote over (impossible ring indices): the host takes nothing more from
    # them, so that one scribbled route neither stops the drains of the others nor a launch.
    _broken: set[int] = field(default_factory=set)

    # -- connect / disconnect --------------------------------------------------------------

    async def connect(self, src: str, dsts: tuple[str, ...]) -> None:
        if not dsts:
            raise KernelStateError(f"connect({src!r}) names no target; give one or more kernels")
        end = self.end(src)
        targets = [self._target(d) for d in dsts]
        for t in targets:
            if (isinstance(t, DeviceChannel) and isinstance(end.channel, DeviceChannel)
                    and t.backend_name != end.channel.backend_name):
                raise KernelStateError(
                    f"cannot connect {src!r} ({end.channel.backend_name}) to {t.kernel_id!r} "
                    f"({t.backend_name}): a route joins kernels of one backend; relay through a "
                    "host actor between backends")
        if len(set(dsts)) != len(dsts):
            raise KernelStateError(f"connect({src!r}, {', '.join(map(repr, dsts))}) names a "
                                   "target twice")
        for t in targets:
            if end.cls is None or (t.input_cls is not end.cls and
                                   not (isinstance(t, HostChannel) and t.input_cls is None)):
                out = end.cls.__name__ if end.cls else "nothing"
                raise KernelStateError(
                    f"cannot connect {src!r} to {t.kernel_id!r}: {src!r} sends {out} and "
                    f"{t.kernel_id!r} takes {getattr(t.input_cls, '__name__', None)}; connect "
                    "kernels whose output and input are the same message")
        new = [d for d in dsts if d not in self.edges.get(src, [])]
        self._refuse_cycle(end.channel.kernel_id, new)
        if isinstance(end.channel, DeviceChannel):
            used = sum(max(len(self.edges.get(e.name, [])), 1 if e.port else 0)
                       for e in self.ends_of(end.channel) if e.name != src)
            if used + len(self.edges.get(src, [])) + len(new) > MAX_LINKS:
                raise KernelStateError(f"{end.channel.kernel_id!r} would send to more than "
                                       f"{MAX_LINKS} routes (its output and send targets "
                                       "together)")
            for d in new:
                target = self._target(d)
                route = self._route(end, d, target)
                await self._attach(route, target)
        self.edges[src] = self.edges.get(src, []) + new
        if isinstance(end.channel, DeviceChannel):
            await self._publish_out(end.channel)
        self.reschedule()

    async def disconnect(self, src: str) -> None:
        """src's output goes to the host again (a send target: to the dead letters); what is
        already in its routes is delivered."""
        end = self.end(src)
        if not self.edges.pop(src, None):
            raise KernelStateError(f"{src!r} is not connected to any kernel")
        if isinstance(end.channel, DeviceChannel) and not end.channel.kernel.closed:
            await self._publish_out(end.channel)

    def end(self, name: str) -> End:
        """The End a connect source names: "kernel" or "kernel.target"."""
        kernel_id, _, target = name.partition(".")
        channel = self.runtime.channel(kernel_id)
        if not target:
            return End(name, channel, 0, channel.output_cls)
        sends = sends_of(channel)
        for port, (send_name, cls) in enumerate(sends, 1):
            if send_name == target:
                return End(name, channel, port, cls)
        declared = ", ".join(f"{kernel_id}.{n}" for n, _ in sends) or "none"
        raise KernelStateError(f"{kernel_id!r} declares no send target {target!r} (its targets: "
                               f"{declared}); add it to the kernel's sends= or connect one of "
                               "those")

    def ends_of(self, channel: Channel) -> list[End]:
        """A kernel's output and each of its send targets."""
        return [self.end(channel.kernel_id)] + [
            self.end(f"{channel.kernel_id}.{name}") for name, _ in sends_of(channel)]

    def _refuse_cycle(self, src: str, new: list[str]) -> None:
        """Routes block when full, so a cycle of them can stop every kernel on it for good."""
        graph: dict[str, list[str]] = {}
        for name, dsts in self.edges.items():
            graph.setdefault(name.partition(".")[0], []).extend(dsts)
        graph.setdefault(src, []).extend(new)
        for d in new:
            path = self._path(graph, d, src, [d])
            if path is not None:
                cycle = " -> ".join([src, *path])
                raise KernelStateError(
                    f"connecting {src!r} to {d!r} closes the cycle {cycle}: routes block while "
                    "full, so every kernel on a cycle can end up waiting for the next one for "
                    "good; leave one edge of it to the host (a host actor that forwards with a "
                    "drop policy) instead of a route")

    def _path(self, graph: dict[str, list[str]], at: str, goal: str,
              seen: list[str]) -> list[str] | None:
        if at == goal:
            return seen
        for nxt in graph.get(at, []):
            if nxt not in seen or nxt == goal:
                found = self._path(graph, nxt, goal, [*seen, nxt])
                if found is not None:
                    return found
        return None

    def _target(self, kernel_id: str) -> Channel:
        channel = self.runtime.channel(kernel_id)
        if isinstance(channel, DeviceChannel):
            self._check_backend(channel)
        channel.check_open()
        return channel

    @staticmethod
    def _check_backend(channel: DeviceChannel) -> None:
        if channel.backend_name not in ("cpu", "cuda"):
            raise BackendUnavailableError(
                f"connect() and sends= are built on the cpu and cuda backends; "
                f"{channel.kernel_id!r} runs on {channel.backend_name}: relay through a host "
                "actor there")

    # -- routes and links ------------------------------------------------------------------

    def _route(self, end: End, dst: str, target: Channel | None) -> _Route:
        """The route from a device kernel's End to `dst` (a kernel, or "" for the dead
        letters), made on first use."""
        key = (end.name, dst)
        route = self._routes.get(key)
        if route is not None:
            return route
        source = end.channel
        assert isinstance(source, DeviceChannel) and end.cls is not None
        dtype = (target.kernel.in_dtype if isinstance(target, DeviceChannel)
                 else self.runtime.dtype_of(end.cls))
        assert dtype is not None  # a device kernel's messages have a layout (ringgen build)
        dst_grid = target.kernel.grid if isinstance(target, DeviceChannel) else 1
        grids = (source.kernel.grid, dst_grid)
        route_type = rings.route_type()
        size = route_type.size(*grids, ROUTE_CAPACITY, dtype.itemsize)
        codec = StructCodec(end.cls, dtype)
        if source.backend_name == "cuda":
            route = self._gpu_route(end, dst, target, size, grids, codec)
        else:
            fd, memory = shared_memory(f"ringgen-route-{end.name}-{dst or 'dead-letters'}", size)
            anchor = ctypes.c_char.from_buffer(memory)
            native = route_type(ctypes.addressof(anchor), *grids, ROUTE_CAPACITY, dtype.itemsize)
            ctypes.c_uint32.from_address(ctypes.addressof(anchor) + rings.ROUTE_HOST_DRAINS_AT).value = 1
            route = _Route(next(self._ids), end.name, dst, fd, path_of(fd), memory, native,
                           anchor, end.port, codec, grids=grids)
        self._routes[key] = route
        return route

    def _gpu_route(self, end: End, dst: str, target: Channel | None, size: int,
                   grids: tuple[int, int], codec: StructCodec,
                   host_only: bool = False) -> _Route:
        """A route out of a kernel on a GPU, placed by backends/cuda.py (`host_only`: in pinned
        memory the host drains, whatever the target: a retired route's successor)."""
        from ringgen.runtime.backends import cuda

        source = end.channel
        assert isinstance(source, DeviceChannel)
        slot = codec.dtype.itemsize
        on_gpu = isinstance(target, DeviceChannel) and target.backend_name == "cuda"
        dst_device = (target.kernel.device if isinstance(target, DeviceChannel) and on_gpu
                      and not host_only else None)
        memory = cuda.route_memory(
            size, lambda address: rings.route_type()(address, *grids, ROUTE_CAPACITY, slot),
            source.kernel.device, dst_device)
        memory.forwarded = on_gpu and memory.host != 0 and not host_only
        if memory.host:  # pinned: the host drains its abandoned rings in place (rg_route.h)
            ctypes.c_uint32.from_address(memory.host + rings.ROUTE_HOST_DRAINS_AT).value = 1
        view = (rings.route_type()(memory.host, *grids, ROUTE_CAPACITY, slot, False)
                if memory.host else None)
        return _Route(next(self._ids), end.name, dst, -1, "", None, view, None, end.port, codec,
                      device=memory, scope=memory.scope, grids=grids)

    def _link_args(self, route: _Route, source_grid: int) -> tuple[Any, ...]:
        """set_link's arguments after (offset, out, index): the route and the target's key."""
        kind = offset = size = data = 0
        target = route.target
        dst_grid = target.kernel.grid if isinstance(target, DeviceChannel) else 1
        key = target.kernel.info.spec.key if isinstance(target, DeviceChannel) else None
        if isinstance(target, DeviceChannel) and key is not None:
            field_dtype, offset = target.kernel.in_dtype.fields[key][:2]  # type: ignore[index]
            if field_dtype.names is not None:  # a bounded str/bytes: {len, data}
                length_name, data_name = field_dtype.names
                kind = KEY_TEXT
                size = field_dtype.fields[data_name][0].itemsize  # type: ignore[index]
                data = offset + field_dtype.fields[data_name][1]  # type: ignore[index]
                offset += field_dtype.fields[length_name][1]  # type: ignore[index]
            else:
                kind = KEY_UINT if field_dtype.kind == "u" else KEY_INT
                size = field_dtype.itemsize
        device_ptr = route.device.device_ptr if route.device is not None else 0
        return (route.route_id, route.edge_id, device_ptr, source_grid, dst_grid, kind, offset, size, data,
                route.path, route.port, route.scope)

    async def _attach(self, route: _Route, target: Channel) -> None:
        """Make `target` the route's consumer: a device kernel takes it into its in-links
        (once per launch of the target); the host drains it into a host actor."""
        if route.target is target:
            return
        if route.host_forwards():
            route.target = target  # the host forwards it into the target's lanes
            return
        if isinstance(target, DeviceChannel):
            async with self._rewriting(target) as live:
                if route.target is target:  # an attach that held the table before did it
                    return
                attached = [r for r in self._routes.values() if r.target is target
                            and not r.host_forwards() and r is not route]
                if len(attached) >= MAX_LINKS:
                    raise KernelStateError(f"{target.kernel_id!r} would take input from more "
                                           f"than {MAX_LINKS} routes")
                route.target = target
                if not live:
                    raise KernelStateError(f"{target.kernel_id!r} was terminated while a "
                                           "route to it was attached")
                # The whole table: a route replaced (_replace_broken) leaves it with the rest.
                links = [self._link_args(r, r.grids[0]) for r in [*attached, route]]
                for i in range(MAX_LINKS):
                    args = links[i] if i < len(links) else _NO_LINK
                    target.kernel.rings.set_link(target.kernel.links_offset, False, i, *args)
                await self._publish(target)
        route.target = target

    async def _publish_out(self, channel: DeviceChannel) -> None:
        """Writes a device kernel's out links, every End of it: its output's routes (none: to
        the host), each send target's (none: to the dead letters). The table is computed once
        the kernel's table is this call's (_rewriting): the routes as they are then."""
        if channel.kernel.closed:
            return
        async with self._rewriting(channel) as live:
            if not live:
                return
            links = []
            for end in self.ends_of(channel):
                dsts = self.edges.get(end.name, [])
                if not dsts and end.port:
                    sink = self._route(end, "", None)
                    links.append(self._link_args(sink, channel.kernel.grid))
                for d in dsts:
                    key = (end.name, d)
                    route = self._successors.get(key) or self._routes[key]
                    links.append(self._link_args(route, channel.kernel.grid))
            assert len(links) <= MAX_LINKS  # connect() counts them
            for i in range(MAX_LINKS):
                args = links[i] if i < len(links) else _NO_LINK
                channel.kernel.rings.set_link(channel.kernel.links_offset, True, i, *args)
            await self._publish(channel)

    @contextlib.asynccontextmanager
    async def _rewriting(self, channel: DeviceChannel) -> AsyncIterator[bool]:
        """Holds a kernel's link table for one rewrite and its publish (_LinkTable): entered
        once no other rewrite holds it and every block applied the last version published;
        yields False if the kernel was closed meanwhile (there is nothing to write then)."""
        kernel = channel.kernel
        table = self._tables.setdefault(kernel, _LinkTable())
        async with table.lock:
            if table.version:  # a publish that timed out: its blocks may still copy it
                await self._acked(channel, table.version)
            yield not kernel.closed

    async def _publish(self, channel: DeviceChannel) -> None:
        """Publishes a kernel's links and waits until every block applied them; only within
        _rewriting, whose table this is."""
        kernel = channel.kernel
        table = self._tables[kernel]
        assert table.lock.locked()
        table.version = kernel.rings.publish_links(kernel.links_offset)
        await self._acked(channel, table.version)

    async def _acked(self, channel: DeviceChannel, version: int) -> None:
        """Until every block of the kernel applied links `version` (or the kernel is closed:
        a kernel that ended reads no table any more). The acks are looked at from the event
        loop, between naps, never from a thread: a terminate on the loop releases the region
        meanwhile."""
        kernel = channel.kernel
        deadline = self.runtime.loop.time() + ACK_TIMEOUT
        nap = 0.0001
        while not (kernel.closed or self._links_acked(kernel, version)):
            if self.runtime.loop.time() > deadline:
                raise KernelStateError(
                    f"kernel {channel.kernel_id!r} did not apply its new routes within "
                    f"{ACK_TIMEOUT} s; a block applies them between two messages, so a handler "
                    "runs that long")
            await asyncio.sleep(nap)
            nap = min(nap * 2, 0.005)

    @staticmethod
    def _links_acked(kernel: RingKernel, version: int) -> bool:
        try:
            return kernel.rings.links_acked(kernel.links_offset, version, 0)
        except rings.region_released():  # released from another thread since closed was read
            return True

    async def launched(self, kernel_id: str) -> None:
        """A kernel was launched (again), before it is activated: its send targets are bound
        (to the dead letters while connected to nothing), and its connections either way
        are restored."""
        channel = self.runtime.channel(kernel_id)
        await self._replace_broken(kernel_id)
        for (src, dst), route in list(self._routes.items()):
            if src.partition(".")[0] == kernel_id:  # what the last incarnation abandoned
                # (this one has no links yet)
                self._guarded(route, functools.partial(self._collect_abandoned, route, True))
            if dst == kernel_id and route.target is not channel:
                # What the last incarnation held (queued, or taken and never finished) is its
                # dead letters now, as the drain tick would have made them: the new one pops
                # from the route's head, past what the last one took.
                if route.rings is not None and route.target is not None and route.target.state in GONE:
                    self._guarded(route, functools.partial(self._drain_one, route, False))
                # A retire of the route (its last target was gone) is cancelled: the route
                # keeps what it holds for this incarnation, and its sender, which a retire may
                # have switched to the successor already, is linked back to it.
                successor = self._successors.pop((src, dst), None)
                await self._attach(route, self._target(dst))
                if successor is not None:
                    self._dropped.append(successor)
                    sender = self.end(src).channel
                    if isinstance(sender, DeviceChannel):
                        await self._publish_out(sender)
        if isinstance(channel, DeviceChannel) and (
                sends_of(channel) or any(e.name in self.edges for e in self.ends_of(channel))):
            try:
                self._check_backend(channel)
            except BackendUnavailableError:
                await channel.terminate(ACK_TIMEOUT)  # it never ran: nothing is left behind
                raise
            await self._publish_out(channel)
        self.reschedule()

    async def _replace_broken(self, kernel_id: str) -> None:
        """A kernel launched again: each route out of it or into it that a kernel wrote over
        (_broken: its sender failed for it, and nothing is taken from it any more) is replaced
        by a fresh one, in the target's in links at once and in the sender's out links at its
        launch, so that neither end uses rings whose indices no push or pop can trust (a
        sender would wait on them for good, a target take junk). The old one stays mapped
        until close: a block of the target may still be finishing a request from it."""
        for key, route in list(self._routes.items()):
            if route.route_id not in self._broken or kernel_id not in (
                    route.src.partition(".")[0], route.dst):
                continue
            del self._routes[key]
            self._dropped.append(route)
            fresh = self._route(self.end(route.src), route.dst, route.target)
            target = route.target
            if isinstance(target, DeviceChannel) and target.state not in GONE:
                await self._attach(fresh, target)
            else:  # the host consumes it (a host actor, a gone target, the dead letters)
                fresh.target = target

    # -- what the host consumes ------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if self._drainer is None and self._routes:
            busy = any((isinstance(r.target, HostChannel) or r.host_forwards())
                       and r.target is not None and r.target.state not in GONE
                       for r in self._routes.values())
            self._drainer = self.runtime.loop.call_later(
                DRAIN_PERIOD if busy else SLOW_DRAIN_PERIOD, self._drain_tick)

    def _drain_tick(self) -> None:
        self._drainer = None
        self.drain_host_ends()
        self._schedule_drain()

    def reschedule(self) -> None:
        """Something changed what the host consumes (a connect, a launch): drain soon."""
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        self._schedule_drain()

    def drain_host_ends(self, final: bool = False) -> None:
        """The routes whose consumer is the host: into a host actor (as far as its queue has
        room), into the dead letters of an unbound send target, or into a target that failed
        or was terminated (its process is gone, so the host is their one consumer).
        `final`: every kernel has stopped (close), so GPU routes are read back at once."""
        for route in [*self._routes.values(), *self._successors.values(), *self._dropped]:
            self._guarded(route, functools.partial(self._drain_one, route, final))

    def _guarded(self, route: _Route, take: Callable[[], None]) -> None:
        """Runs `take` (the host taking from the route) unless the route is broken; a route
        whose rings hold indices no ring can have (rg_host.cpp: bad_ring) is broken from then
        on: its sender, the one writer of what the host takes, fails, and one dead letter says
        that what the route held is lost."""
        if route.route_id in self._broken:
            return
        try:
            take()
        except rings.region_fault() as e:
            self._broken.add(route.route_id)
            sender = self.end(route.src).channel
            reason = (f"it wrote over its route {route.src!r} -> {route.dst or 'dead letters'!r} "
                      f"({e}); the host takes nothing more from that route")
            log.error("kernel %s: %s", sender.kernel_id, reason)
            sender.dead_letter(b"", DeadLetterReason.KERNEL_FAILED,
                               f"what {sender.kernel_id!r} had sent into a route is lost: {reason}")
            sender.fail(reason)

    def _drain_one(self, route: _Route, final: bool) -> None:
        """One route of drain_host_ends."""
        target = route.target
        if route.rings is None:  # GPU memory, taken by the target alone while it runs
            if final:
                self._read_back(route)
            elif target is not None and target.state in GONE:
                self._retire_soon(route)
            else:
                self._collect_abandoned(route)
            return
        self._collect_abandoned(route, force=final)
        if target is None:
            self._dead_letters(route, route.rings.drain(), DeadLetterReason.UNBOUND,
                               f"sent to {route.src!r}, which is bound to no kernel: bind it "
                               f"with await runtime.connect({route.src!r}, <kernel_id>) "
                               "before the kernel sends")
        elif target.state in GONE:
            if isinstance(target, DeviceChannel) and not (
                    target.state is KernelState.TERMINATED or target.kernel.exited()):
                return
            failed = target.failure is not None  # also once a relaunch terminated the failed one
            self._dead_letters(
                route, route.rings.drain(),
                DeadLetterReason.KERNEL_FAILED if failed else DeadLetterReason.TERMINATED,
                f"routed from {route.src!r} to {route.dst!r}, which "
                + (f"failed: {target.failure}" if failed else "was terminated"), target)
        elif isinstance(target, HostChannel):
            self._to_host_actor(route, target)
        elif route.host_forwards() and isinstance(target, DeviceChannel):
            self._forward(route, target)

    def _forward(self, route: _Route, target: DeviceChannel) -> None:
        """A route between GPUs that cannot reach each other: the host moves what waits in it
        into the target's lanes, as far as its queue has room (a full target makes the sender
        wait, as a route does), flagged as part of a conversation (rg_ring_loop keeps their
        correlation_id, as for a request popped from a route)."""
        assert route.rings is not None
        room = target.queue_size - len(target.backlog)
        if room <= 0 or target.state is not KernelState.ACTIVE:
            return
        raw = route.rings.drain(room)
        if not raw:
            return
        rows = np.frombuffer(bytearray(raw), dtype=target.in_dtype)
        rows["flags"] |= header.FLAG_CONVERSATION
        # room was there: send_array admits it all at once, without waiting, so the drains of
        # successive ticks reach the lanes in order. The route's slots are free already: if the
        # target fails or ends before the task runs, what it carried becomes dead letters.
        task = self.runtime.loop.create_task(target.send_array(rows, None))
        task.add_done_callback(lambda t: self._forward_done(t, route, target, raw))

    def _forward_done(self, task: asyncio.Task[Any], route: _Route, target: DeviceChannel,
                      raw: bytes) -> None:
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or error is not None:
            failed = target.state is KernelState.FAILED
            self._dead_letters(
                route, raw, DeadLetterReason.KERNEL_FAILED if failed else DeadLetterReason.TERMINATED,
                f"forwarded by the host from {route.src!r} to {route.dst!r}, which refused it: "
                f"{error or 'the runtime closed'}", target)

    def _retire_soon(self, route: _Route) -> None:
        if route.route_id not in self._retiring:
            self._retiring.add(route.route_id)
            self.runtime.loop.create_task(self._retire(route))

    async def _retire(self, route: _Route) -> None:
        """A route in GPU memory whose target is gone: its sender is switched to a pinned route
        the host drains (into the target's dead letters, as on the CPU backend); once every
        block of the sender acknowledged, nothing writes the old one, which is read back and
        dead-lettered (from `done`: what the target took and never finished comes first), and
        the successor takes its place. Until then the old route stays in the table (and the
        successor in _successors, drained as well): a sender that does not acknowledge in time
        is asked again at a later drain, and nothing in either route is lost meanwhile."""
        assert route.device is not None
        key = (route.src, route.dst)
        gone = route.target
        successor = self._successors.get(key)
        if successor is None:
            successor = self._gpu_route(self.end(route.src), route.dst, route.target,
                                        route.device.size, route.grids, route.codec,
                                        host_only=True)
            successor.target = route.target
            successor.edge_id = route.edge_id  # the same connection: no send goes into both
            self._successors[key] = successor
        source = self.end(route.src).channel
        if isinstance(source, DeviceChannel) and not source.kernel.closed:
            try:
                await self._publish_out(source)
            except KernelStateError as e:
                log.warning("route %s -> %s: its sender has not left it yet (%s); asked again "
                            "at a later drain", route.src, route.dst, e)
                self._retiring.discard(route.route_id)
                return
        if (self._routes.get(key) is not route or self._successors.get(key) is not successor
                or route.target is not gone):
            # The runtime closed meanwhile, or the target was launched again (`launched`
            # cancelled the retire and took the successor away): the route is live again.
            self._retiring.discard(route.route_id)
            return
        self._routes[key] = self._successors.pop(key)
        self._retiring.discard(route.route_id)
        self._guarded(route, functools.partial(self._read_back, route))
        route.device.free()

    def _read_back(self, route: _Route) -> None:
        """What a GPU route nothing writes any more holds, into dead letters of its target."""
        assert route.device is not None
        target = route.target
        failed = target is not None and target.state is KernelState.FAILED
        reason = DeadLetterReason.KERNEL_FAILED if failed else DeadLetterReason.TERMINATED
        detail = (f"routed from {route.src!r} to {route.dst!r}, which "
                  + (f"failed: {getattr(target, 'failure', '')}" if failed else "was terminated"))
        try:
            address = route.device.read_back()
        except Exception as e:  # a faulted GPU's memory cannot be read any more
            owner = target or self.end(route.src).channel
            owner.dead_letter(b"", reason, f"{detail}; what its route held on the GPU is lost "
                              f"with the GPU's context ({e})")
            return
        copy = rings.route_type()(address, *route.grids, ROUTE_CAPACITY,
                                  route.codec.dtype.itemsize, False)
        self._dead_letters(route, copy.drain(), reason, detail, target)
        self._restore_taken(route, address)
        self._abandoned_letters(route, address)

    def _collect_abandoned(self, route: _Route, force: bool = False) -> None:
        """The sends that the route's sender abandoned at terminate, into its dead letters:
        from host memory while it is gone (terminating, or ended); from GPU memory once its
        latest incarnation has exited (a copy is read, then written back); with `force`, now
        (no block of the sender runs: it is being launched again, or every kernel stopped)."""
        sender = self.end(route.src).channel
        if route.rings is not None:
            # Host memory, whose abandoned rings the host drains in place while the sender
            # terminates: its blocks may wait for room in them (rg_route_abandon).
            if force or sender.state in GONE:
                self._abandoned_letters(route, route.host_address())
            return
        assert route.device is not None  # GPU memory
        if not force and (route.abandoned_of is sender or not (
                isinstance(sender, DeviceChannel) and sender.state in GONE
                and sender.kernel.exited())):
            return
        # GPU memory: a copy, whose abandoned rings, once drained, are written back (the
        # target's blocks may use the rest of the route meanwhile; it is not written back).
        offset = abandoned_offset(route.grids, ROUTE_CAPACITY, route.codec.dtype.itemsize)
        try:
            address = route.device.read_back()
        except Exception as e:  # a lost GPU: the final read back reports what it held
            log.warning("route %s -> %s: its abandoned sends cannot be read back: %s",
                        route.src, route.dst, e)
            return  # (not marked taken: tried again at the next drain)
        route.abandoned_of = sender
        self._restore_taken(route, address)
        self._abandoned_letters(route, address)
        try:
            route.device.write_back(offset)
            route.unwritten = None
        except Exception as e:
            route.unwritten = ctypes.string_at(address + offset, route.device.size - offset)
            log.warning("route %s -> %s: what the host took of its abandoned sends cannot be "
                        "written back (%s); the next look restores it into its copy",
                        route.src, route.dst, e)

    @staticmethod
    def _restore_taken(route: _Route, address: int) -> None:
        """Into a fresh copy at `address` of a route in GPU memory: the heads of its
        abandoned rings as the host left them in a copy it could not write back, so what
        that copy reported is not reported again (nothing but the host moves those heads)."""
        if route.unwritten is None:
            return
        slot = route.codec.dtype.itemsize
        offset = abandoned_offset(route.grids, ROUTE_CAPACITY, slot)
        header, stride = route_geometry(ROUTE_CAPACITY, slot)
        for i in range(route.grids[0] * rings.LANES):  # one target block: the host
            at = header + i * stride
            heads = route.unwritten[at:at + rings.RING_HEAD_BYTES]  # (head, then done)
            ctypes.memmove(address + offset + at, heads, len(heads))

    def _abandoned_letters(self, route: _Route, address: int) -> None:
        """Dead letters of the sender for what it abandoned in the route at `address` (its
        memory, or a copy of it), and for what it counted as lost there."""
        raw, lost = take_abandoned(address, route.grids, ROUTE_CAPACITY,
                                   route.codec.dtype.itemsize, route.lost_seen)
        if not raw and lost == route.lost_seen:
            return
        kernel_id = route.src.partition(".")[0]
        into = f"its route to {route.dst!r}" if route.dst else "the host's dead letters"
        detail = (f"sent by {kernel_id!r} ({route.src!r}) and abandoned: {kernel_id!r} was "
                  f"terminated while it waited for room in {into}")
        sender = self.end(route.src).channel
        self._dead_letters(route, raw, DeadLetterReason.TERMINATED, detail, sender)
        count = lost - route.lost_seen
        route.lost_seen = lost
        if count > lost_bound(route.grids, ROUTE_CAPACITY):
            # `lost` lies in memory the senders write: a count no terminate can reach is a
            # scribble, reported once with its count rather than one dead letter each.
            sender.dead_letter(b"", DeadLetterReason.TERMINATED,
                               f"{detail}; the route's lost counter rose by {count}, more than "
                               "its senders can lose at one terminate, so a kernel wrote over "
                               "it: how many messages were lost is unknown")
            return
        for _ in range(count):
            sender.dead_letter(b"", DeadLetterReason.TERMINATED,
                               f"{detail}; the route's abandoned rings were full, so the "
                               "message itself is lost (only counted)")

    def _to_host_actor(self, route: _Route, target: HostChannel) -> None:
        room = target.queue_size - len(target.backlog)
        if room <= 0:
            return  # the route fills and the sender waits: backpressure upstream
        assert route.rings is not None  # a host actor's route is host memory on every backend
        for msg in self._unpack(route, route.rings.drain(room), target):
            target.send_nowait(msg)

    def _unpack(self, route: _Route, raw: bytes, owner: Channel | None) -> list[Any]:
        if not raw:
            return []
        try:
            return route.codec.unpack_many(raw)
        except (MessageSerializationError, ValueError) as e:
            channel = owner or self.end(route.src).channel
            channel.dead_letter(raw, DeadLetterReason.UNDECODABLE,
                                f"routed from {route.src!r}: the sender wrote messages the host "
                                f"cannot decode ({e}); the dead letter holds the structs' bytes")
            return []

    def _dead_letters(self, route: _Route, raw: bytes, reason: DeadLetterReason, detail: str,
                      owner: Channel | None = None) -> None:
        """Dead letters of the target (of the sender, for an unbound send target). A
        request(..., reply_from=) whose conversation one of them was on its way to answer
        (reply_from is the target or downstream of it) raises: nothing else will answer it."""
        if not raw:  # the usual case of a periodic drain: nothing to look up
            return
        channel = owner or self.end(route.src).channel
        downstream = self._downstream(route.dst) if route.dst else []
        for msg in self._unpack(route, raw, owner):
            channel.dead_letter(msg, reason, detail)
            if msg.correlation_id is None or not downstream:
                continue
            error: Exception = (KernelFaultError if reason is DeadLetterReason.KERNEL_FAILED
                                else KernelStateError)(
                f"the request's conversation ended in a dead letter ({reason.value}): {detail}")
            for kernel_id in downstream:
                self.runtime.channel(kernel_id).replies.refuse(msg.correlation_id.int, error)

    def upstream_first(self, kernel_ids: list[str]) -> list[str]:
        """kernel_ids ordered so that every sender comes before its targets (routes make no
        cycle): draining them in that order, a target's drain sees all its senders routed."""
        order: list[str] = []

        def visit(k: str) -> None:
            if k in order:
                return
            for name, dsts in self.edges.items():
                if k in dsts:
                    visit(name.partition(".")[0])
            order.append(k)

        for k in kernel_ids:
            visit(k)
        return [k for k in order if k in kernel_ids]

    def pending_into(self, kernel_id: str) -> int:
        """Messages routed to kernel_id and not yet finished by it (drain() waits for them).
        A route in GPU memory is counted from copies of its rings' `done` words, then of their
        tails (two strided copies while the kernels run: a copy engine guarantees no order
        within one), so a count from them is not below what was pending when they began. A GPU
        that is lost makes this a KernelStateError naming the route, not a raw CUDA error."""
        pending = 0
        for r in self._routes.values():
            if r.dst != kernel_id or r.host_forwards():
                continue
            if r.rings is not None:
                pending += r.rings.pending()
            elif r.device is not None:
                slot = r.codec.dtype.itemsize
                done, tails = ring_headers(r.grids, ROUTE_CAPACITY, slot)
                try:
                    address = r.device.read_rows(done)
                    r.device.read_rows(tails)  # (into the same copy, after `done`)
                except Exception as e:  # a faulted GPU: its memory cannot be read any more
                    raise KernelStateError(
                        f"cannot count what waits in the route {r.src!r} -> {r.dst!r} on its "
                        f"GPU ({e}); the GPU's context is lost, and what the route held with "
                        "it (reported in dead letters when the runtime closes)") from e
                pending += rings.route_type()(address, *r.grids, ROUTE_CAPACITY, slot,
                                              False).pending()
        return pending

    def _downstream(self, kernel_id: str) -> list[str]:
        """kernel_id and every actor its output or sends reach over connections."""
        seen = [kernel_id]
        for at in seen:
            for name, dsts in self.edges.items():
                if name.partition(".")[0] == at:
                    seen += [d for d in dsts if d not in seen]
        return seen

    def close(self) -> None:
        """After every kernel stopped: the last dead letters, then the routes' memory goes."""
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        self.drain_host_ends(final=True)
        for route in [*self._routes.values(), *self._successors.values(), *self._dropped]:
            if route.device is not None:
                route.device.free()
            if route.memory is not None:
                route.anchor = None
                route.memory.close()
                os.close(route.fd)
        self._routes.clear()
        self._successors.clear()
        self._dropped.clear()
        self.edges.clear()


async def request_through(first: Channel, last: Channel, msg: Any, timeout: float | None) -> Any:
    """request() whose reply comes from `last`, the end of a pipeline that `first` starts:
    the route keeps the correlation_id, so last's answer names msg."""
    if not last.answers:
        raise KernelStateError(f"kernel {last.kernel_id!r} sends no responses; it cannot be "
                               "reply_from")
    key = msg.message_id.int
    future: asyncio.Future[Any] = last.loop.create_future()
    last.replies.expect(key, future)
    gave_up = False  # a reply may still come: it will be a dead letter, never an inbox's
    try:
        if not await first.send(msg, timeout):
            raise QueueFullError(f"kernel {first.kernel_id!r}: the request was dropped by "
                                 f"backpressure '{first.backpressure}'")
        last.want_responses(spin=False)  # the answer crosses the pipeline's hops first
        return await last.deadlines.wait(future, timeout)
    except asyncio.TimeoutError:
        gave_up = True
        raise asyncio.TimeoutError(
            f"no reply from kernel {last.kernel_id!r} within {timeout} s; a late reply will go "
            "to the dead letters") from None
    except asyncio.CancelledError:
        gave_up = True
        raise
    finally:
        last.replies.settle(key, gave_up)
