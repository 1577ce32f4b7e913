"""The device side of routes (rg_route.h): on a GPU both ends of a route ring are blocks of that
GPU, which push, pop and finish with device-scope acquire/release; between GPUs, or to the
host, system scope. No GPU is lent to these tests: they check what nvcc makes of it (sm_90
PTX), where a route is placed, and the host's forwarding between GPUs that cannot reach each
other (which needs no driver); runs on GPUs are owed."""

from __future__ import annotations

import asyncio
import ctypes
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import build_package, have_nvcc

from ringgen import DeadLetterReason, KernelStateError, RingKernelRuntime
from ringgen.runtime.backends import cuda, rings
from ringgen.toolchain.compile import cccl_include, templates_dir

ROUTE_PROBE = r"""
#include "rg_route.h"
struct Msg { uint8_t bytes[40]; };
extern "C" __global__ void probe(rg_ring* ring, Msg* io, int* ok) {
    ok[0] = rg_route_OPS::push(ring, &io[0]);
    ok[1] = rg_route_OPS::pop(ring, &io[1], 4);
    rg_route_OPS::finish(ring, 1);
}
"""

def _ptx(source: Path, includes: list[Path]) -> str:
    out = source.with_suffix(".ptx")
    cmd = ["nvcc", "-arch=sm_90", "-std=c++17", *(f"-I{i}" for i in includes), "-ptx",
           str(source), "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    return out.read_text()


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_route_rings_use_device_scope_and_no_system_fence(tmp_path: Path) -> None:
    """Between two kernels of one GPU (RG_ROUTE_DEVICE): device scope, nothing over the bus."""
    source = tmp_path / "probe.cu"
    source.write_text(ROUTE_PROBE.replace("rg_route_OPS", "rg_route_device_ops"))
    ptx = _ptx(source, [templates_dir(), cccl_include()])
    assert "ld.acquire.gpu" in ptx and "st.release.gpu" in ptx, ptx[-3000:]
    assert ".sys" not in ptx, "a route ring op is fenced at system scope (over the bus)"


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_routes_to_another_gpu_or_the_host_use_system_scope(tmp_path: Path) -> None:
    """Peer memory of another GPU, or pinned memory the host drains (RG_ROUTE_SYSTEM): device
    scope covers one GPU only, so their acquire/release is at system scope."""
    source = tmp_path / "probe.cu"
    source.write_text(ROUTE_PROBE.replace("rg_route_OPS", "rg_route_system_ops"))
    ptx = _ptx(source, [templates_dir(), cccl_include()])
    assert "ld.acquire.sys" in ptx and "st.release.sys" in ptx, ptx[-3000:]
    assert ".gpu" not in ptx


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_a_routed_kernel_pops_and_pushes_its_routes_at_device_scope(tmp_path: Path) -> None:
    """A generated kernel keeps system scope for its host rings and uses device scope for its
    routes: both kinds appear in its sm_90 PTX."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")
    package = pkg.package.path
    ptx = _ptx(package / "a.cu", [package, cccl_include()])
    assert "ld.acquire.gpu" in ptx and "st.release.gpu" in ptx  # the routes
    assert "ld.acquire.sys" in ptx and "st.release.sys" in ptx  # the host rings



def test_a_route_is_placed_where_both_ends_reach_it() -> None:
    """One GPU: its memory; two that reach each other: the target's; else (or to the host):
    pinned host memory the host drains."""
    assert cuda.placement(0, 0, peer=False) == "device"
    assert cuda.placement(0, 1, peer=True) == "peer"
    assert cuda.placement(0, 1, peer=False) == "host"
    assert cuda.placement(1, None, peer=False) == "host"


def test_the_route_arena_allocates_aligned_pieces_and_merges_what_is_freed() -> None:
    pieces = cuda.FreeList(1024)
    a, b, c = pieces.allocate(100), pieces.allocate(128), pieces.allocate(129)
    assert (a, b, c) == (0, 128, 256)  # 128-byte lines, first fit
    assert pieces.allocate(1024) is None
    pieces.release(b, 128)
    assert pieces.allocate(64) == 128  # the hole is reused
    for offset, size in ((a, 100), (128, 64), (c, 129)):
        pieces.release(offset, size)
    assert pieces.free == [(0, 1024)]  # merged back into one piece


def test_a_route_the_host_forwards_keeps_order_backpressure_and_the_conversation(
        tmp_path: Path) -> None:
    """Between GPUs that cannot reach each other, the host drains the sender's route (pinned
    memory) into the target's lanes (routes.py: _forward). That path needs no driver: here the
    route between two CPU runners is marked as one the host forwards, as cuda.route_memory
    marks a pinned route between two such GPUs, so that the target does not take it itself.
    What must hold is what holds over any route: nothing lost or duplicated, FIFO per
    priority, and the conversation kept (the forwarded requests carry FLAG_CONVERSATION, so
    reply_from= works across the hop)."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("c", "b", "a"):
                await rt.launch(k)
            await rt.connect("b", "c")
            routes = rt.routes
            end, target = routes.end("a"), rt.channel("b")
            route = routes._route(end, "b", target)
            assert route.rings is not None
            route.device = cuda.RouteMemory(0, cuda.SCOPE_SYSTEM, 1, 0, forwarded=True)
            await routes._attach(route, target)
            routes.edges["a"] = ["b"]
            await routes._publish_out(rt.channel("a"))  # type: ignore[arg-type]
            routes.reschedule()
            assert route.host_forwards() and route.target is target

            msgs = [pkg.Item(seq=i, priority=(10, 128, 200)[i % 3]) for i in range(2000)]
            got: list[Any] = []

            async def collect() -> None:
                while len(got) < len(msgs):
                    batch = await rt.receive_many("c", 512, timeout=10.0)
                    assert batch, f"stalled after {len(got)}"
                    got.extend(batch)

            await asyncio.gather(rt.send_many("a", msgs), collect())
            assert sorted(r.seq for r in got) == list(range(len(msgs)))
            assert all(r.hops == 3 for r in got)
            by_id = {m.message_id: m for m in msgs}
            per_priority: dict[int, list[int]] = {}
            for r in got:
                assert by_id[r.correlation_id].seq == r.seq  # the conversation survived
                per_priority.setdefault(r.priority, []).append(r.seq)
            assert all(s == sorted(s) for s in per_priority.values())
            reply = await rt.request("a", pkg.Item(seq=-7), timeout=10.0, reply_from="c")
            assert reply.seq == -7 and reply.hops == 3
            assert not rt.dead_letters

    asyncio.run(main())


def _host_successor(routes: Any) -> Any:
    """What Routes._gpu_route(..., host_only=True) makes on a GPU (pinned memory the host
    drains), made of host memory as on the CPU backend, for runners that map it by path."""
    from ringgen.runtime.routes import ROUTE_CAPACITY, _Route
    from ringgen.runtime.shm import path_of, shared_memory

    def make(end: Any, dst: str, target: Any, size: int, grids: tuple[int, int], codec: Any,
             host_only: bool = False) -> Any:
        assert host_only  # only a retired route's successor is made here
        fd, memory = shared_memory(f"ringgen-test-successor-{end.name}-{dst}", size)
        anchor = ctypes.c_char.from_buffer(memory)
        view = rings.route_type()(ctypes.addressof(anchor), *grids, ROUTE_CAPACITY,
                                  codec.dtype.itemsize)
        return _Route(next(routes._ids), end.name, dst, fd, path_of(fd), memory, view, anchor,
                      end.port, codec, grids=grids)

    return make


def _in_gpu_memory(routes: Any, key: tuple[str, str]) -> Any:
    """Route `key` as if in GPU memory (read back in place, never drained), whose retire makes
    a host-memory successor (_host_successor): the GPU path of routes.py on CPU runners."""
    route = routes._routes[key]
    assert route.rings is not None and route.memory is not None
    route.device = cuda.RouteMemory(0, cuda.SCOPE_DEVICE, route.host_address(), len(route.memory))
    route.rings = None
    routes._gpu_route = _host_successor(routes)
    return route


def test_a_retired_route_stays_until_its_stuck_sender_follows_the_successor(
        tmp_path: Path) -> None:
    """The GPU path of a target that is gone (routes.py: _retire), on CPU runners: the route
    a -> b is marked as GPU memory (the host takes nothing from it in place; it reads it back
    once no sender writes it), and b stops while a waits for room in it. The first try to
    retire it fails (a sender that did not acknowledge in time, injected): the old route stays
    in the table meanwhile. The next try switches a to a successor the host drains while a
    still waits in the full route, which a must follow (rg_outs::relink) to acknowledge.
    Every message a routed to b, before and after, is then a dead letter of b, once."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("b", "a"):
                await rt.launch(k)
            await rt.connect("a", "b")
            routes = rt.routes
            key = ("a", "b")
            route = _in_gpu_memory(routes, key)
            publish = routes._publish_out
            tries: list[bool] = []

            async def flaky(channel: Any) -> None:
                tries.append(routes._routes[key] is route and key in routes._successors)
                if len(tries) == 1:
                    raise KernelStateError("kernel 'a' did not apply its new routes (injected)")
                await publish(channel)

            await rt.deactivate("b")  # takes nothing: a fills the route and waits in it
            first = [pkg.Item(seq=i, priority=128) for i in range(300)]
            await rt.send_many("a", first)
            seen = -1
            while (left := rt.telemetry("a").in_flight) != seen:
                seen = left
                await asyncio.sleep(0.2)
            assert left > 0  # a is stuck in the full route
            routes._publish_out = flaky  # type: ignore[method-assign]
            await rt.terminate("b")
            for _ in range(300):
                if routes._routes[key] is not route:
                    break
                await asyncio.sleep(0.05)
            assert routes._routes[key] is not route, f"not retired: {tries}"
            assert tries[:2] == [True, True]  # after the failed try, both were kept
            later = [pkg.Item(seq=1000 + i, priority=200) for i in range(5)]
            await rt.send_many("a", later)
            want = sorted(m.seq for m in first + later)
            for _ in range(300):
                dead = [d for d in rt.dead_letters if d.reason is DeadLetterReason.TERMINATED]
                if len(dead) >= len(want):
                    break
                await asyncio.sleep(0.05)
            assert sorted(d.message.seq for d in dead) == want
            assert all(d.kernel_id == "b" and "routed from 'a' to 'b'" in d.detail for d in dead)
            assert rt.state("a").value == "active"

    asyncio.run(main())


def test_drain_counts_a_gpu_route_from_a_copy_of_its_ring_headers(tmp_path: Path) -> None:
    """drain() of a target counts what waits for it in a route in GPU memory from the rows
    RouteMemory.read_rows copies (routes.py: ring_headers): here a route between CPU runners
    whose rows alone are copied, as the 2D copy does, into an otherwise empty buffer gives the
    route's own count, for every (sender block, target block, lane) ring."""
    from ringgen.runtime.routes import ROUTE_CAPACITY, ring_headers

    pkg: Any = build_package("schemas.routed", tmp_path / "gen")

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("keyed_sink", "pub"):
                await rt.launch(k)
            await rt.connect("pub", "keyed_sink")
            await rt.deactivate("keyed_sink")  # what pub routes waits in the rings
            await rt.send_many("pub", [pkg.Item(seq=i, tag=i % 7, priority=(10, 128, 200)[i % 3])
                                       for i in range(90)])
            route = rt.routes._routes[("pub", "keyed_sink")]
            assert route.rings is not None and route.memory is not None
            for _ in range(200):
                if route.rings.pending() == 90:
                    break
                await asyncio.sleep(0.02)
            assert route.rings.pending() == 90
            slot = route.codec.dtype.itemsize
            done, tails = ring_headers(route.grids, ROUTE_CAPACITY, slot)
            whole = np.frombuffer(route.memory[:], dtype=np.uint8)  # (paused: it stays)
            copy = np.zeros_like(whole)
            for rows in (done, tails):  # what the two 2D copies move
                assert rows.count == 2 * 4 * rings.LANES and rows.width <= rows.pitch
                for i in range(rows.count):
                    at = rows.first + i * rows.pitch
                    copy[at:at + rows.width] = whole[at:at + rows.width]
            view = rings.route_type()(int(copy.ctypes.data), *route.grids, ROUTE_CAPACITY, slot,
                                      False)
            assert view.pending() == 90
            await rt.activate("keyed_sink")
            await rt.drain()

    asyncio.run(main())


def test_a_target_launched_again_while_its_route_retires_keeps_the_route(
        tmp_path: Path) -> None:
    """The GPU path of a target that is gone (routes.py: _retire), on CPU runners as above, and
    the target launched again while the retire waits: its sender is switched to the successor
    and has acknowledged, then b is launched again before the retire goes on. The route stays
    b's (what it holds and what a sends later reach the new b), the retire is given up, and the
    sender is linked back to the route, not to the successor that dead-letters into the old b."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("b", "a"):
                await rt.launch(k)
            await rt.connect("a", "b")
            routes = rt.routes
            key = ("a", "b")
            route = _in_gpu_memory(routes, key)
            publish = routes._publish_out
            switched, relaunched = asyncio.Event(), asyncio.Event()

            async def held(channel: Any) -> None:
                await publish(channel)
                if not switched.is_set():  # the retire's switch: hold it until b is back
                    switched.set()
                    await relaunched.wait()

            routes._publish_out = held  # type: ignore[method-assign]
            await rt.terminate("b")
            await asyncio.wait_for(switched.wait(), 10.0)
            assert routes._successors.get(key) is not None  # a sends into the successor
            await rt.launch("b")
            relaunched.set()
            for _ in range(20):  # the retire goes on, on the loop
                await asyncio.sleep(0.02)
            assert routes._routes[key] is route and key not in routes._successors
            items = [pkg.Item(seq=i, priority=128) for i in range(50)]
            await rt.send_many("a", items)
            got = []
            while len(got) < len(items):
                batch = await rt.receive_many("b", len(items) - len(got), timeout=10.0)
                assert batch, f"b got {len(got)} of {len(items)}; dead: {rt.dead_letters}"
                got += batch
            assert sorted(m.seq for m in got) == list(range(50))
            assert not rt.dead_letters

    asyncio.run(main())


def test_a_send_that_follows_a_retired_route_to_its_successor_is_not_sent_twice(
        tmp_path: Path) -> None:
    """a fans out to keyed_sink (its route marked as GPU memory, as above) and c. Both take
    nothing, and a fills its route to c first (c has one block, keyed_sink four): a waits with
    a message pushed into keyed_sink's route already. keyed_sink is terminated, so its route
    retires and a follows the successor mid-send (rg_outs::push, relink): the successor carries
    the same connection (rg_link::edge_id), so the message is not pushed into it again. Every
    message is then one dead letter of keyed_sink, and reaches c once."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("keyed_sink", "c", "a"):
                await rt.launch(k)
            await rt.connect("a", "keyed_sink", "c")
            routes = rt.routes
            route = _in_gpu_memory(routes, ("a", "keyed_sink"))
            for k in ("keyed_sink", "c"):
                await rt.deactivate(k)
            items = [pkg.Item(seq=i, tag=i % 16, priority=128) for i in range(100)]
            await rt.send_many("a", items)
            seen = -1
            while (left := rt.telemetry("a").in_flight) != seen:
                seen = left
                await asyncio.sleep(0.2)
            assert left > 0  # a waits for room in its route to c
            await rt.terminate("keyed_sink")
            for _ in range(200):  # the successor is published: a follows it, still waiting
                if ("a", "keyed_sink") in routes._successors:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            await rt.activate("c")  # a finishes the message, then acknowledges
            for _ in range(300):
                if retired := routes._routes[("a", "keyed_sink")] is not route:
                    break
                await asyncio.sleep(0.05)
            assert retired
            got = []
            while len(got) < len(items):
                batch = await rt.receive_many("c", len(items) - len(got), timeout=10.0)
                assert batch, f"c got {len(got)} of {len(items)}"
                got += batch
            assert sorted(m.seq for m in got) == list(range(100))
            for _ in range(100):
                dead = [d.message.seq for d in rt.dead_letters if d.kernel_id == "keyed_sink"]
                if len(dead) >= len(items):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # a second copy would come with the successor's drains
            dead = [d.message.seq for d in rt.dead_letters if d.kernel_id == "keyed_sink"]
            assert sorted(dead) == list(range(100)), [s for s in set(dead) if dead.count(s) > 1]

    asyncio.run(main())


class _RowsCopy:
    """A test double of RouteMemory.read_rows over host memory: copies each call's rows into
    a staging buffer (as the 2D copy does) and records them; `lost`: raises as a lost GPU."""

    def __init__(self, address: int, size: int, lost: bool = False) -> None:
        self.address, self.lost, self.forwarded = address, lost, False
        self.staging = ctypes.create_string_buffer(size)
        self.calls: list[Any] = []

    def read_rows(self, rows: Any) -> int:
        if self.lost:
            raise RuntimeError("cuMemcpy2DAsync failed: an illegal memory access (injected)")
        self.calls.append(rows)
        for i in range(rows.count):
            at = rows.first + i * rows.pitch
            ctypes.memmove(ctypes.addressof(self.staging) + at, self.address + at, rows.width)
        return ctypes.addressof(self.staging)


def test_drain_copies_the_rings_done_words_before_their_tails() -> None:
    """pending_into (drain()) of a route in GPU memory: one copy of every ring's `done`, then
    another of the tails (one 2D copy guarantees no order between its rows, so `done` could
    be read after a later tail: an undercount, and drain() returning early). The count is
    the route's own; a lost GPU is a KernelStateError naming the route."""
    from ringgen.runtime.routes import ROUTE_CAPACITY, Routes, _Route, route_geometry

    slot, grids = 64, (2, 3)
    size = rings.route_type().size(*grids, ROUTE_CAPACITY, slot)
    memory = ctypes.create_string_buffer(size)
    address = ctypes.addressof(memory)
    rings.route_type()(address, *grids, ROUTE_CAPACITY, slot)  # lays it out
    header, stride = route_geometry(ROUTE_CAPACITY, slot)
    for i in range(grids[0] * grids[1] * rings.LANES):  # ring i: i + 1 pushed, 1 finished
        ring = address + header + i * stride
        ctypes.c_uint64.from_address(ring + rings.RING_TAIL_AT).value = i + 1
        ctypes.c_uint64.from_address(ring + rings.RING_DONE_AT).value = 1
        ctypes.c_uint64.from_address(ring).value = 1  # head
    n = grids[0] * grids[1] * rings.LANES
    want = sum(range(n))
    codec = type("Codec", (), {"dtype": np.dtype((np.void, slot))})()
    for lost in (False, True):
        copy = _RowsCopy(address, size, lost)
        route = _Route(1, "a", "b", -1, "", None, None, None, 0, codec,  # type: ignore[arg-type]
                       device=copy, grids=grids)  # type: ignore[arg-type]
        routes = Routes(None, _routes={("a", "b"): route})  # type: ignore[arg-type]
        if lost:
            with pytest.raises(KernelStateError, match=r"'a' -> 'b'.*GPU"):
                routes.pending_into("b")
            continue
        assert routes.pending_into("b") == want
        assert [(c.first, c.width) for c in copy.calls] == [
            (header + rings.RING_DONE_AT, 8), (header + rings.RING_TAIL_AT, 8)]
