"""runtime.connect: device kernels that send to each other through routes in shared memory
between their runner processes — pipelines, fan-out, conversations, keys over routes, a
target that crashes, types and cycles refused."""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, build_package, compile_cpp, compile_nvcc_each, have_nvcc, receive_n

from ringgen import DeadLetterReason, KernelStateError, RingKernelRuntime
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import DEFAULT_LANE_CAPACITY, DEFAULT_OUT_CAPACITY
from ringgen.runtime.keys import key_hash
from ringgen.runtime.shm import shared_memory
from ringgen.toolchain.compile import cccl_include, compile_runner, templates_dir


@pytest.fixture(scope="module")
def routed_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.routed", tmp_path_factory.mktemp("routed") / "gen")


@pytest.mark.serial  # TSan stress: 200 k messages over threads
def test_route_protocol_under_thread_sanitizer(routed_pkg: Any, tmp_path: Path) -> None:
    """Two sender blocks, four keyed target blocks, rings of 4 slots: every message once, FIFO
    per (sender block, priority, key), correlated, in its key's block; TSan clean."""
    binary = tmp_path / "route_stress"
    package = routed_pkg.package.path
    compile_cpp([ROOT / "tests" / "native" / "route_stress.cpp", templates_dir() / "rg_cpu_runtime.cpp"],
                binary, [package, templates_dir(), cccl_include()],
                ["-fsanitize=thread", "-pthread", f"-DRG_SENDER_CU=\"{package / 'pub.cu'}\"",
                 f"-DRG_TARGET_CU=\"{package / 'keyed_sink.cu'}\"", "-Wno-error"])
    result = subprocess.run([str(binary), "200000"], capture_output=True, text=True, timeout=300,
                            env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == "OK 200000"


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_routed_kernels_compile_with_nvcc_sm90(routed_pkg: Any, tmp_path: Path) -> None:
    compile_nvcc_each(sorted(routed_pkg.package.path.glob("*.cu")), tmp_path)


def _seq_hops(message: Any) -> list[tuple[int, int]]:
    """(seq, hops) of a dead letter's Item, or of each of its rows (send_many's structs)."""
    if isinstance(message, np.ndarray):
        return [(int(r["seq"]), int(r["hops"])) for r in message]
    return [(message.seq, message.hops)]


def _items(pkg: Any, n: int, seed: int = 1) -> list[Any]:
    rnd = random.Random(seed)
    return [pkg.Item(seq=i, tag=rnd.randrange(8), priority=rnd.choice((10, 100, 128, 128, 200)))
            for i in range(n)]


def test_a_pipeline_of_device_stages_loses_nothing_and_keeps_order(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b", "c"):
                await rt.launch(k)
            await rt.connect("a", "b")
            await rt.connect("b", "c")
            msgs = _items(pkg, 3000)
            # Received while sent: c's output ring holds 1024, and a full one stops the line.
            _, got = await asyncio.gather(rt.send_many("a", msgs), receive_n(rt, "c", len(msgs)))
            assert sorted(r.seq for r in got) == list(range(len(msgs)))  # each exactly once
            assert all(r.hops == 3 for r in got)
            by_id = {m.message_id: m for m in msgs}
            assert all(r.correlation_id in by_id and by_id[r.correlation_id].seq == r.seq
                       for r in got)  # the conversation survives both routes
            per_priority: dict[int, list[int]] = defaultdict(list)
            for r in got:
                assert r.priority == by_id[r.correlation_id].priority
                per_priority[r.priority].append(r.seq)
            assert all(seqs == sorted(seqs) for seqs in per_priority.values())  # FIFO
            assert await rt.receive_many("a", 1, timeout=0.05) == []  # nothing went to the host
            await rt.drain()
            assert rt.dead_letters == type(rt.dead_letters)(maxlen=rt.dead_letters.maxlen)

            reply = await rt.request("a", pkg.Item(seq=-5), timeout=10.0, reply_from="c")
            assert reply.seq == -5 and reply.hops == 3

            await rt.disconnect("b")  # b answers the host again
            reply = await rt.request("a", pkg.Item(seq=-6), timeout=10.0, reply_from="b")
            assert reply.hops == 2

    asyncio.run(main())


def test_fan_out_gives_every_subscriber_every_message_once(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("pub", "a", "b", "c"):
                await rt.launch(k)
            await rt.connect("pub", "a", "b", "c")
            msgs = _items(pkg, 1000, seed=2)
            await rt.send_many("pub", msgs)
            for k in ("a", "b", "c"):
                got = await receive_n(rt, k, len(msgs))
                assert sorted(r.seq for r in got) == list(range(len(msgs))), k
                assert all(r.hops == 2 for r in got)

    asyncio.run(main())


def test_a_key_picks_the_block_over_a_route_too(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("pub", "keyed_sink"):
                await rt.launch(k)
            await rt.connect("pub", "keyed_sink")
            msgs = _items(pkg, 400, seed=3)
            await rt.send_many("pub", msgs)
            got = await receive_n(rt, "keyed_sink", len(msgs))
            assert {(r.tag, int(r.block)) for r in got} == {
                (t, key_hash(t) % 4) for t in {m.tag for m in msgs}}

    asyncio.run(main())


def test_a_crashing_middle_stage_turns_its_input_into_dead_letters(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b", "c"):
                await rt.launch(k)
            await rt.connect("a", "b")
            await rt.connect("b", "c")
            before = [pkg.Item(seq=i) for i in range(200)]
            await rt.send_many("a", before)
            assert len(await receive_n(rt, "c", 200)) == 200
            await rt.send("a", pkg.Item(seq=200, tag=-1))  # b dies on this one
            for _ in range(500):
                if rt.state("b").value == "failed":
                    break
                await asyncio.sleep(0.01)
            assert rt.state("b").value == "failed"
            after = [pkg.Item(seq=1000 + i) for i in range(300)]  # more than a route holds
            await rt.send_many("a", after)
            await rt.drain("a")  # the sender keeps running: no hang on the dead target
            for _ in range(500):
                dead = [d for d in rt.dead_letters if d.kernel_id == "b"]
                if len(dead) >= 301:
                    break
                await asyncio.sleep(0.01)
            # the one b held when it died (200) too: a route slot is freed only once finished
            assert sorted(d.message.seq for d in dead) == [200] + [1000 + i for i in range(300)]
            assert all(d.reason is DeadLetterReason.KERNEL_FAILED and "routed from 'a'" in d.detail
                       for d in dead)
            assert rt.state("a").value == "active"

    asyncio.run(main())


def test_a_sender_terminated_while_its_route_is_full(routed_pkg: Any) -> None:
    """a is terminated while it waits for room in its route to a paused b: each request a
    took is answered into the route (b gets it once resumed) or its response is a dead letter
    of a (abandoned), and each it did not take is a dead letter as itself, never both."""
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("b", "a"):
                await rt.launch(k)
            await rt.connect("a", "b")
            await rt.deactivate("b")
            msgs = [pkg.Item(seq=i, priority=128) for i in range(400)]  # > the 64 a ring holds
            await rt.send_many("a", msgs)
            seen = -1
            while (left := rt.telemetry("a").in_flight) != seen:  # until a is stuck
                seen = left
                await asyncio.sleep(0.2)
            assert left > 0
            await rt.terminate("a")
            await rt.activate("b")
            got: list[int] = []
            while batch := await rt.receive_many("b", 1000, timeout=0.5):
                got += [r.seq for r in batch]
            for _ in range(100):  # the abandoned ones: at the host's next drain
                dead = [(d, seq, hops) for d in rt.dead_letters if d.kernel_id == "a"
                        for seq, hops in _seq_hops(d.message)]
                if any(hops == 1 for _, _, hops in dead):
                    break
                await asyncio.sleep(0.02)
            assert all(d.reason is DeadLetterReason.TERMINATED for d, _, _ in dead)
            requests = [seq for _, seq, hops in dead if hops == 0]
            abandoned = [seq for _, seq, hops in dead if hops == 1]
            assert abandoned and all("abandoned" in d.detail for d, _, hops in dead if hops)
            assert sorted(got + requests + abandoned) == list(range(len(msgs)))
            # The batch stopped at the response whose push the terminate interrupted: the
            # requests after it are dead letters as themselves, not abandoned responses, so a
            # terminate cannot fill the abandoned rings.
            assert len(abandoned) == 1, abandoned  # a: grid=1, one route

    asyncio.run(main())


def test_connect_refuses_other_types_and_cycles(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b", "c", "other"):
                await rt.launch(k)
            with pytest.raises(KernelStateError, match="'a' sends Item and 'other' takes Other"):
                await rt.connect("a", "other")
            await rt.connect("a", "b")
            await rt.connect("b", "c")
            with pytest.raises(KernelStateError, match="cycle c -> a -> b -> c"):
                await rt.connect("c", "a")
            with pytest.raises(KernelStateError, match="cycle a -> a"):
                await rt.connect("a", "a")

    asyncio.run(main())


def test_a_runner_refuses_a_region_too_short_for_its_links(routed_pkg: Any) -> None:
    """A region file that holds the rings its header describes and not the state slots and
    links after them (a layout the host got wrong): the runner ends with a report naming the
    sizes before any block reads or writes past the file (rg_region_extent_check)."""
    info = routed_pkg.package.kernel("a")
    assert info.out_dtype is not None
    args = (info.grid, info.block, DEFAULT_LANE_CAPACITY, DEFAULT_OUT_CAPACITY,
            info.in_dtype.itemsize, info.out_dtype.itemsize, info.in_lead, info.out_lead)
    size = rings.region_type().size(*args)
    fd, memory = shared_memory("ringgen-test-short-region", size)
    anchor = ctypes.c_char.from_buffer(memory)
    try:
        rings.region_type()(ctypes.addressof(anchor), *args[:6], 1, *args[6:])
        runner = compile_runner(Path(info.package_dir), "a").path
        done = subprocess.run([str(runner), f"/proc/self/fd/{fd}", str(os.getpid())],
                              pass_fds=(fd,), capture_output=True, text=True, timeout=30)
    finally:
        del anchor
        memory.close()
        os.close(fd)
    assert done.returncode != 0
    assert f"not within the {size} bytes of the region" in done.stderr, done.stderr
