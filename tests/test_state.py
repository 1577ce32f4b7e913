"""state= and key=: each block keeps its own state across messages and deactivate/activate,
the host reads exact snapshots of it, and a key sends a message to the same block every time
(FIFO per key) — the generated C checked against the Python reference, in real runners."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from conftest import build_package, compile_nvcc_each, have_nvcc

from ringgen import KernelStateError, RingKernelRuntime
from ringgen.errors import SchemaError
from ringgen.runtime.keys import key_hash


@pytest.fixture(scope="module")
def stateful_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.stateful", tmp_path_factory.mktemp("stateful") / "gen")


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_stateful_kernels_compile_with_nvcc_sm90(stateful_pkg: Any, tmp_path: Any) -> None:
    compile_nvcc_each(sorted(stateful_pkg.package.path.glob("*.cu")), tmp_path)


def _readings(pkg: Any, n: int, sensors: int, seed: int = 1) -> list[Any]:
    rnd = random.Random(seed)
    return [pkg.Reading(sensor=rnd.randrange(sensors), value=rnd.randrange(-50, 1000), seq=i)
            for i in range(n)]


def _reference(pkg: Any, blocks: list[list[Any]]) -> list[Any]:
    """The Python reference run over each block's messages, in order, from the defaults."""
    out = []
    for msgs in blocks:
        state = pkg.Tally()
        for m in msgs:
            pkg.tally(m, state)
        out.append(state)
    return out


def _same(got: Any, want: Any) -> None:
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        assert a == pytest.approx(b, rel=1e-12) if isinstance(b, float) else a == b, (f.name, a, b)


async def _requests(rt: RingKernelRuntime, kernel_id: str, msgs: list[Any]) -> list[Any]:
    await rt.send_many(kernel_id, msgs)
    got: list[Any] = []
    while len(got) < len(msgs):
        batch = await rt.receive_many(kernel_id, len(msgs) - len(got), timeout=10.0)
        assert batch, f"only {len(got)} of {len(msgs)} responses"
        got += batch
    return got


def test_state_starts_from_defaults_and_snapshots_are_exact(stateful_pkg: Any,
                                                              backend: str) -> None:
    pkg = stateful_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            await rt.launch("tally")
            assert await rt.read_state("tally") == [pkg.Tally()]
            msgs = _readings(pkg, 300, 5)
            got = await _requests(rt, "tally", msgs)
            assert [r.count for r in got] == list(range(1, 301))
            [state] = await rt.read_state("tally")
            _same(state, _reference(pkg, [msgs])[0])
            assert isinstance(state.seen_odd, bool) and isinstance(state.count, int)

    asyncio.run(main())


def test_state_is_kept_across_deactivate_and_activate(stateful_pkg: Any, backend: str) -> None:
    pkg = stateful_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            await rt.launch("tally")
            first, second = _readings(pkg, 120, 3, seed=2), _readings(pkg, 80, 3, seed=3)
            await _requests(rt, "tally", first)
            await rt.deactivate("tally")
            [paused] = await rt.read_state("tally")  # a paused block answers too
            _same(paused, _reference(pkg, [first])[0])
            await rt.activate("tally")
            await _requests(rt, "tally", second)
            [state] = await rt.read_state("tally")
            _same(state, _reference(pkg, [first + second])[0])

    asyncio.run(main())


def test_a_key_routes_every_message_of_it_to_one_block_in_order(stateful_pkg: Any,
                                                                  backend: str) -> None:
    pkg = stateful_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            await rt.launch("keyed")
            msgs = _readings(pkg, 100, 10, seed=4)
            # Half one by one (the direct path into the lanes), half as a batch (the backlog).
            got = [await rt.request("keyed", m, timeout=10.0) for m in msgs[:50]]
            got += await _requests(rt, "keyed", msgs[50:])
            blocks_of: dict[int, set[int]] = defaultdict(set)
            counts: dict[int, list[int]] = defaultdict(list)
            for r in got:
                blocks_of[r.sensor].add(int(r.block))
                counts[r.sensor].append(r.count)
            assert all(len(b) == 1 for b in blocks_of.values()), blocks_of
            assert {s: b.pop() for s, b in blocks_of.items()} == {
                s: key_hash(s) % 4 for s in blocks_of}
            per_block: list[list[Any]] = [[] for _ in range(4)]
            for m in msgs:
                per_block[key_hash(m.sensor) % 4].append(m)
            states = await rt.read_state("keyed")
            for got_state, want in zip(states, _reference(pkg, per_block), strict=True):
                _same(got_state, want)  # the block's messages in send order: FIFO per key
            for s, seen in counts.items():  # each key's answers come back in its order
                assert seen == sorted(seen), (s, seen)

    asyncio.run(main())


def test_without_a_key_one_sensor_is_spread_over_the_blocks(stateful_pkg: Any,
                                                            backend: str) -> None:
    """What key= is for: round robin leaves every block with part of each sensor."""
    pkg = stateful_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            await rt.launch("unkeyed")
            msgs = [pkg.Reading(sensor=1, value=i, seq=i) for i in range(100)]
            for m in msgs:
                await rt.request("unkeyed", m, timeout=10.0)
            states = await rt.read_state("unkeyed")
            assert sum(s.count for s in states) == 100
            assert sum(s.count > 0 for s in states) > 1

    asyncio.run(main())


def test_read_state_of_a_kernel_without_state_says_how(kernels_pkg: Any, backend: str) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            await rt.launch("echo")
            with pytest.raises(KernelStateError, match="state="):
                await rt.read_state("echo")

    asyncio.run(main())


def test_key_hash_is_stable() -> None:
    assert key_hash(0) == 0
    assert key_hash(1) == 0x5692161D100B05E5  # the splitmix64 finalizer of 1
    assert key_hash("") == 0xCBF29CE484222325 and key_hash(b"a") == 0xAF63DC4C8601EC8C
    assert key_hash(-1) == key_hash(np.int64(-1)) == key_hash((1 << 64) - 1)


def test_bad_state_and_key_declarations_are_schema_errors() -> None:
    from ringgen import message, ring_kernel

    @message
    @dataclasses.dataclass
    class In:
        x: int

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        n: int = 0

    @dataclasses.dataclass
    class NoDefault:
        n: int

    for kwargs, match in (({"state": Frozen}, "frozen"), ({"state": NoDefault}, "default"),
                          ({"state": In}, "plain @dataclass"), ({"key": "y"}, "not a field")):
        with pytest.raises(SchemaError, match=match):
            ring_kernel(kernel_id="k", input=In, cuda="x", **kwargs)(lambda req: None)


def test_a_python_handler_takes_key_and_state() -> None:
    """A translated (plain def) kernel is a device kernel: key= routes its messages as any
    other's, and state= is translated (tests/test_translate.py runs it)."""
    from ringgen import message, ring_kernel

    @message
    @dataclasses.dataclass
    class In:
        x: int

    @dataclasses.dataclass
    class Counter:
        n: int = 0

    def handler(req: Any, state: Counter) -> None: ...

    keyed = ring_kernel(kernel_id="keyed", input=In, key="x")(handler)
    assert keyed.__rg_kernel__.translated and keyed.__rg_kernel__.key == "x"  # type: ignore[attr-defined]
    stateful = ring_kernel(kernel_id="stateful", input=In, state=Counter)(handler)
    assert stateful.__rg_kernel__.translated and stateful.__rg_kernel__.state is Counter  # type: ignore[attr-defined]
