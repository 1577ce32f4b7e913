"""The device side of routes (rg_route.h): on a GPU both ends of a route ring are blocks of that
GPU, which push, pop and finish with device-scope acquire/release; between GPUs, or to the
host, system scope. No GPU is lent to these tests: they check what nvcc makes of it (sm_90
PTX), where a route is placed, and the host's forwarding between GPUs that cannot reach each
other (which needs no driver); runs on GPUs are owed."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import build_package, have_nvcc

from ringgen import RingKernelRuntime
from ringgen.runtime.backends import cuda
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
