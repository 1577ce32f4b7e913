"""Connections between device kernels: `runtime.connect(src, *dsts)` sends src's output straight
into each dst's input (fan-out when several), `disconnect(src)` back to the host.

A route is the memory of rg_route.h (a shared-memory file both runner processes map on the
CPU backend): one SPSC ring per (sender block, target block, priority class). The host only
writes the kernels' link tables and waits for every block to acknowledge them, so once
connect() returns every block sends into the routes, and once disconnect() returns none does
any more. A route stays attached to its target until the runtime closes: what is in it when
the sender disconnects is still delivered.

A target that fails or is terminated takes nothing more from its routes; from then on the host
is their consumer and turns everything in them (queued before, or sent after) into dead
letters of the target, so that the senders keep running and nothing vanishes.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import mmap
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ringgen.errors import BackendUnavailableError, KernelStateError, QueueFullError
from ringgen.runtime.backends import rings
from ringgen.runtime.channels import Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.device_channel import DeviceChannel
from ringgen.runtime.shm import path_of, shared_memory

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime

MAX_LINKS = 8  # RG_MAX_LINKS: routes out of, and into, one kernel
ROUTE_CAPACITY = 64  # slots of each (sender block, target block, lane) ring
ACK_TIMEOUT = 5.0  # seconds for every block to apply new links (it does so between messages)
DRAIN_PERIOD = 0.001  # how often the host drains the routes into a target that is gone
# Key kinds of rg_route.h
KEY_NONE, KEY_INT, KEY_UINT, KEY_TEXT = 0, 1, 2, 3


@dataclass
class _Route:
    route_id: int
    src: str
    dst: str
    fd: int  # the memory file, kept open: a runner launched later opens it by `path`
    path: str
    memory: mmap.mmap
    rings: rings.Route
    anchor: Any  # keeps the buffer export alive while `rings` uses its address
    target: Channel | None = None  # the dst channel whose in-links hold this route


@dataclass
class Routes:
    runtime: RingKernelRuntime
    edges: dict[str, list[str]] = field(default_factory=dict)  # src -> dsts, in connect order
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _drainer: asyncio.TimerHandle | None = None

    # -- connect / disconnect --------------------------------------------------------------

    async def connect(self, src: str, dsts: tuple[str, ...]) -> None:
        if not dsts:
            raise KernelStateError(f"connect({src!r}) names no target; give one or more kernels")
        source = self._device(src)
        targets = [self._device(d) for d in dsts]
        if len(set(dsts)) != len(dsts):
            raise KernelStateError(f"connect({src!r}, {', '.join(map(repr, dsts))}) names a "
                                   "target twice")
        for t in targets:
            if source.output_cls is None or t.input_cls is not source.output_cls:
                out = source.output_cls.__name__ if source.output_cls else "nothing"
                raise KernelStateError(
                    f"cannot connect {src!r} to {t.kernel_id!r}: {src!r} sends {out} and "
                    f"{t.kernel_id!r} takes {getattr(t.input_cls, '__name__', None)}; connect "
                    "kernels whose "
                    "output and input are the same message")
        new = [d for d in dsts if d not in self.edges.get(src, [])]
        self._refuse_cycle(src, new)
        if len(self.edges.get(src, [])) + len(new) > MAX_LINKS:
            raise KernelStateError(f"{src!r} would send to more than {MAX_LINKS} kernels")
        for d in new:
            route = self._route(source, self._device(d))
            await self._attach(route, self._device(d))
        self.edges[src] = self.edges.get(src, []) + new
        await self._publish_out(src)
        self._schedule_drain()

    async def disconnect(self, src: str) -> None:
        """src's output goes to the host again; what is already in its routes is delivered."""
        if not self.edges.pop(src, None):
            raise KernelStateError(f"{src!r} is not connected to any kernel")
        await self._publish_out(src)

    def _refuse_cycle(self, src: str, new: list[str]) -> None:
        """Routes block when full, so a cycle of them can stop every kernel on it for good."""
        graph = {k: list(v) for k, v in self.edges.items()}
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

    def _device(self, kernel_id: str) -> DeviceChannel:
        channel = self.runtime.channel(kernel_id)
        if not isinstance(channel, DeviceChannel):
            raise KernelStateError(f"{kernel_id!r} is a host actor; connect() joins device "
                                   "kernels (a host actor forwards with ctx.send)")
        if channel.backend_name != "cpu":
            raise BackendUnavailableError(
                f"connect() is built on the CPU backend only so far; {kernel_id!r} runs on "
                f"{channel.backend_name}: relay through a host actor there")
        channel.check_open()
        return channel

    # -- routes and links ------------------------------------------------------------------

    def _route(self, source: DeviceChannel, target: DeviceChannel) -> _Route:
        key = (source.kernel_id, target.kernel_id)
        route = self._routes.get(key)
        if route is not None:
            return route
        slot = target.kernel.in_dtype.itemsize
        route_type = rings.route_type()
        size = route_type.size(source.kernel.grid, target.kernel.grid, ROUTE_CAPACITY, slot)
        fd, memory = shared_memory(f"ringgen-route-{source.kernel_id}-{target.kernel_id}", size)
        anchor = ctypes.c_char.from_buffer(memory)
        native = route_type(ctypes.addressof(anchor), source.kernel.grid, target.kernel.grid,
                            ROUTE_CAPACITY, slot)
        route = _Route(next(self._ids), source.kernel_id, target.kernel_id, fd, path_of(fd), memory,
                       native, anchor)
        self._routes[key] = route
        return route

    def _link_args(self, route: _Route, target: DeviceChannel, source_grid: int) -> tuple[Any, ...]:
        """set_link's arguments after (offset, out, index): the route and the target's key."""
        kind = offset = size = data = 0
        key = target.kernel.info.spec.key
        if key is not None:
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
        return (route.route_id, 0, source_grid, target.kernel.grid, kind, offset, size, data,
                route.path)

    async def _attach(self, route: _Route, target: DeviceChannel) -> None:
        """Add the route to the target's in-links (once per launch of the target)."""
        if route.target is target:
            return
        attached = [r for r in self._routes.values() if r.target is target]
        if len(attached) >= MAX_LINKS:
            raise KernelStateError(f"{target.kernel_id!r} would take input from more than "
                                   f"{MAX_LINKS} kernels")
        source_grid = self.runtime.channel(route.src)
        assert isinstance(source_grid, DeviceChannel)
        target.kernel.rings.set_link(target.kernel.links_offset, False, len(attached),
                                     *self._link_args(route, target, source_grid.kernel.grid))
        await self._publish(target)
        route.target = target

    async def _publish_out(self, src: str) -> None:
        channel = self.runtime.channel(src)
        if not isinstance(channel, DeviceChannel) or channel.kernel.closed:
            return
        dsts = self.edges.get(src, [])
        for i in range(MAX_LINKS):
            if i < len(dsts):
                route = self._routes[(src, dsts[i])]
                target = self.runtime.channel(dsts[i])
                assert isinstance(target, DeviceChannel)
                args = self._link_args(route, target, channel.kernel.grid)
            else:
                args = (0, 0, 0, 0, 0, 0, 0, 0, "")
            channel.kernel.rings.set_link(channel.kernel.links_offset, True, i, *args)
        await self._publish(channel)

    async def _publish(self, channel: DeviceChannel) -> None:
        kernel = channel.kernel
        version = kernel.rings.publish_links(kernel.links_offset)
        acked = await self.runtime.loop.run_in_executor(
            None, kernel.rings.links_acked, kernel.links_offset, version, int(ACK_TIMEOUT * 1e9))
        if not acked:
            raise KernelStateError(
                f"kernel {channel.kernel_id!r} did not apply its new routes within {ACK_TIMEOUT} "
                "s; a block applies them between two messages, so a handler runs that long")

    async def relaunched(self, kernel_id: str) -> None:
        """A kernel was launched again: its connections (either way) are restored."""
        for (_, dst), route in self._routes.items():
            if dst == kernel_id and route.target is not self.runtime.channel(kernel_id):
                await self._attach(route, self._device(dst))
        if kernel_id in self.edges:
            await self._publish_out(kernel_id)

    # -- targets that are gone -------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if self._drainer is None and self._routes:
            self._drainer = self.runtime.loop.call_later(DRAIN_PERIOD, self._drain_tick)

    def _drain_tick(self) -> None:
        self._drainer = None
        self.drain_gone()
        self._schedule_drain()

    def drain_gone(self) -> None:
        """The routes into targets that failed or were terminated: what is in them becomes
        dead letters of the target (its process is gone, so the host is their one consumer)."""
        for route in self._routes.values():
            target = route.target
            if target is None or target.state not in (KernelState.FAILED, KernelState.TERMINATED):
                continue
            assert isinstance(target, DeviceChannel)
            if target.state is KernelState.TERMINATED or target.kernel.exited():
                raw = route.rings.drain()
                if not raw:
                    continue
                failed = target.state is KernelState.FAILED
                reason = DeadLetterReason.KERNEL_FAILED if failed else DeadLetterReason.TERMINATED
                detail = (f"routed from {route.src!r} to {route.dst!r}, which "
                          + (f"failed: {target.failure}" if failed else "was terminated"))
                for msg in target.in_codec.unpack_many(raw):
                    target.dead_letter(msg, reason, detail)

    def close(self) -> None:
        """After every kernel stopped: the last dead letters, then the routes' memory goes."""
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        self.drain_gone()
        for route in self._routes.values():
            route.anchor = None
            route.memory.close()
            os.close(route.fd)
        self._routes.clear()
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
    timed_out = False
    try:
        if not await first.send(msg, timeout):
            raise QueueFullError(f"kernel {first.kernel_id!r}: the request was dropped by "
                                 f"backpressure '{first.backpressure}'")
        last.want_responses()
        return await last.deadlines.wait(future, timeout)
    except asyncio.TimeoutError:
        timed_out = True
        raise asyncio.TimeoutError(
            f"no reply from kernel {last.kernel_id!r} within {timeout} s; a late reply will go "
            "to the dead letters") from None
    finally:
        last.replies.settle(key, timed_out)
