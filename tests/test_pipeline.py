"""A three-stage device pipeline connected by routes (tests/schemas/soak.py: entry -> middle ->
slow_end) under load, on the CPU backend's real runner processes: a long stream with mixed
priorities and a slow end (nothing lost or duplicated, FIFO per priority, every answer
correlated to the message that entered), each backpressure strategy at the entry (every
message delivered, dropped as a dead letter, or refused, exactly one of them), and a middle
stage crashing mid-stream (the entry keeps running, what the middle stage had queued becomes
dead letters, nothing hangs).

test_routes.py has the short pipeline, fan-out to three subscribers, keys over routes, and
types and cycles refused; they are not repeated here.

Size: RINGGEN_PIPELINE_MESSAGES (default 10,000: about 36 s at load 10 for 20,000). The
issue's full size is 1,000,000:
    RINGGEN_PIPELINE_MESSAGES=1000000 .venv/bin/pytest tests/test_pipeline.py -k long -s
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from conftest import build_package

from ringgen import DeadLetterReason, KernelState, QueueFullError, RingKernelRuntime

MESSAGES = int(os.environ.get("RINGGEN_PIPELINE_MESSAGES", "10000"))
PRIORITIES = (10, 100, 128, 128, 200, 250)  # one of each lane, the default one twice
STAGES = ("entry", "middle", "slow_end")


@pytest.fixture(scope="module")
def soak_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.soak", tmp_path_factory.mktemp("soak") / "gen")


async def _start(rt: RingKernelRuntime, **entry: Any) -> None:
    for stage in reversed(STAGES):
        await rt.launch(stage, **(entry if stage == "entry" else {}))
    await rt.connect("entry", "middle")
    await rt.connect("middle", "slow_end")


def _rows(pkg: Any, start: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Jobs start..start+n with random priorities; each message_id holds its seq (bytes 0-7),
    so that an answer's correlation_id names the job that entered."""
    rows = np.zeros(n, dtype=pkg.DTYPES["Job"])
    rows["seq"] = np.arange(start, start + n)
    rows["priority"] = rng.choice(PRIORITIES, n)
    rows["message_id"][:, :8] = rows["seq"].astype("<i8").view(np.uint8).reshape(n, 8)
    rows["message_id"][:, 8] = 0x5A  # not all zero
    return rows


@pytest.mark.slow
def test_a_long_stream_through_a_slow_pipeline_loses_nothing_and_keeps_order(soak_pkg: Any) -> None:
    pkg = soak_pkg
    chunk = 4096
    rng = np.random.default_rng(12)

    async def main() -> tuple[np.ndarray, float]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await _start(rt, queue_size=1 << 14)
            out: list[np.ndarray] = []

            async def sink() -> None:
                got = 0
                while got < MESSAGES:
                    batch = await rt.receive_array("slow_end", MESSAGES - got, timeout=30.0)
                    assert len(batch), f"the pipeline stalled after {got} of {MESSAGES}"
                    out.append(batch[["seq", "priority", "hops", "correlation_id"]].copy())
                    got += len(batch)

            t0 = time.perf_counter()
            drain = asyncio.ensure_future(sink())
            for start in range(0, MESSAGES, chunk):
                await rt.send_array("entry", _rows(pkg, start, min(chunk, MESSAGES - start), rng))
            await asyncio.wait_for(drain, timeout=60 + MESSAGES / 2000)
            elapsed = time.perf_counter() - t0
            assert await rt.receive_many("entry", 1, timeout=0.0) == []  # nothing came back
            assert await rt.receive_many("middle", 1, timeout=0.0) == []
            assert not rt.dead_letters
            return np.concatenate(out), elapsed

    got, elapsed = asyncio.run(main())
    print(f"\n{MESSAGES} messages through 3 connected stages (slow end) in {elapsed:.1f} s")
    assert len(got) == MESSAGES
    assert np.array_equal(np.sort(got["seq"]), np.arange(MESSAGES))  # none lost, none twice
    assert (got["hops"] == 3).all()
    origin = got["correlation_id"][:, :8].copy().view("<i8").ravel()
    assert np.array_equal(origin, got["seq"])  # each answer names the job that entered
    for p in set(PRIORITIES):  # FIFO within a priority, end to end
        seqs = got["seq"][got["priority"] == p]
        assert len(seqs) and (np.diff(seqs) > 0).all(), p


@pytest.mark.parametrize("backpressure", ["block", "reject", "drop_oldest", "drop_newest"])
def test_each_backpressure_strategy_at_the_entry_accounts_for_every_message(
        soak_pkg: Any, backpressure: str) -> None:
    """A small entry queue in front of a slow pipeline: under 'block' everything arrives; under
    the others some of it cannot, and each such message is a dead letter of the entry (a drop)
    or was refused to the caller (reject) — exactly one fate per message."""
    pkg = soak_pkg
    n = 1500

    async def main() -> tuple[list[Any], list[Any], set[int]]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await _start(rt, queue_size=32, backpressure=backpressure, lane_capacity=8)
            msgs = [pkg.Job(seq=i, priority=PRIORITIES[i % len(PRIORITIES)]) for i in range(n)]
            refused: set[int] = set()
            got: list[Any] = []
            done = asyncio.Event()

            async def collect() -> None:  # the end's output ring is bounded too: keep taking
                while not done.is_set():
                    got.extend(await rt.receive_many("slow_end", n, timeout=0.05))

            collector = asyncio.ensure_future(collect())
            for start in range(0, n, 50):
                part = msgs[start:start + 50]
                try:
                    await rt.send_many("entry", part, timeout=30.0)
                except QueueFullError as e:  # reject: the whole batch or none of it
                    assert backpressure == "reject" and not len(e.accepted)
                    refused.update(m.seq for m in part)
            # drain() counts what the host gave a kernel, not what came over a route: wait for
            # the fates instead (a lost message shows as a timeout here).
            deadline = time.monotonic() + 60.0
            while len(got) + len(rt.dead_letters) + len(refused) < n:
                assert time.monotonic() < deadline, (len(got), len(rt.dead_letters), len(refused))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # anything more would be a duplicate
            done.set()
            await collector
            got += await rt.receive_many("slow_end", n, timeout=0.0)
            return got, list(rt.dead_letters), refused

    got, dead, refused = asyncio.run(main())
    delivered = [r.seq for r in got]
    dropped = [d.message.seq for d in dead]
    reason = {"drop_oldest": DeadLetterReason.DROPPED_OLDEST,
              "drop_newest": DeadLetterReason.DROPPED_NEWEST}.get(backpressure)
    assert all(d.kernel_id == "entry" and d.reason is reason for d in dead)
    assert len(set(delivered)) == len(delivered) and len(set(dropped)) == len(dropped)
    assert not (set(delivered) & set(dropped)) and not (set(delivered) & refused)
    assert sorted([*delivered, *dropped, *refused]) == list(range(n))  # one fate each
    if backpressure == "block":
        assert sorted(delivered) == list(range(n))
    else:  # the slow end made the entry queue overflow: the strategy did act
        assert dropped or refused
    per_priority: dict[int, list[int]] = defaultdict(list)
    for r in got:
        per_priority[r.priority].append(r.seq)
    assert all(seqs == sorted(seqs) for seqs in per_priority.values())  # FIFO per priority


def test_a_middle_stage_crashing_mid_stream_leaves_the_rest_running(soak_pkg: Any) -> None:
    """The middle stage dies on one job in the middle of a stream that keeps coming while the
    routes into it are full: the entry keeps running (drain() returns), what was queued for the
    middle stage and what the entry sends it afterwards become dead letters of the middle
    stage, and every job is delivered or a dead letter, never both."""
    pkg = soak_pkg
    n, crash_at = 2000, 700

    async def main() -> tuple[list[Any], list[Any], str]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await _start(rt, queue_size=4096)
            msgs = [pkg.Job(seq=i, tag=-1 if i == crash_at else 0) for i in range(n)]
            await rt.send_many("entry", msgs)
            await asyncio.wait_for(rt.drain("entry"), 30.0)  # no hang behind the dead target
            assert rt.state("entry") is KernelState.ACTIVE
            got: list[Any] = []
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:  # the rest of the fates come in
                got += await rt.receive_many("slow_end", n, timeout=0.1)
                middle_dead = [d for d in rt.dead_letters if d.kernel_id == "middle"]
                if len(got) + len(middle_dead) >= n:
                    break
            return got, middle_dead, rt.state("middle").value

    got, dead, middle_state = asyncio.run(main())
    assert middle_state == "failed"
    delivered = sorted(r.seq for r in got)
    lost = sorted(d.message.seq for d in dead)
    assert delivered == list(range(len(delivered)))  # everything before the crash, in order
    assert len(delivered) <= crash_at
    assert all(d.reason is DeadLetterReason.KERNEL_FAILED and "routed from 'entry'" in d.detail
               for d in dead)
    assert not set(delivered) & set(lost)
    assert crash_at in lost  # the request the middle stage held when it died, too
    assert sorted([*delivered, *lost]) == list(range(n))  # every job has exactly one fate


def test_the_request_a_crashing_stage_held_is_a_dead_letter(soak_pkg: Any) -> None:
    pkg = soak_pkg

    async def main() -> list[Any]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await _start(rt)
            await rt.send("entry", pkg.Job(seq=1, tag=-1))
            for _ in range(500):
                if rt.state("middle") is KernelState.FAILED:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            return [d.message.seq for d in rt.dead_letters if d.kernel_id == "middle"]

    assert asyncio.run(main()) == [1]
