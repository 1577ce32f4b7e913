"""The one-at-a-time host path of a device kernel (issue 11 (d)): send() admits into the backlog
without coroutines, lanes found full are not rescanned until the kernel shows progress, and
receive() hands out responses decoded a batch at a time. Each test fails if that path drops,
duplicates or misorders a message, or leaves the kernel unfed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import receive_n

from ringgen import QueueFullError, RingKernelRuntime
from ringgen.runtime.device_channel import LOOK_AFTER

LANE = 2  # the lane of priority 128


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_full_lanes_are_not_rescanned_by_a_sender_that_never_yields(kernels_pkg: Any) -> None:
    """Once a feed found a lane full, sends into the backlog do not ask the kernel again (only
    its progress frees slots) but once per LOOK_AFTER messages. A message of a higher lane
    still goes straight into it, and once the loop runs the backlog follows, in order. The
    low lane is made to look full."""
    ping = kernels_pkg.Ping

    async def main() -> tuple[list[int], int, bool]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", queue_size=4096)
            kernel = rt.channel("echo").kernel  # type: ignore[attr-defined]
            push, push_quiet, lane_free = kernel.push, kernel.push_quiet, kernel.lane_free
            looks = 0

            def counted_free(block: int, lane: int) -> int:
                nonlocal looks
                looks += 1
                return 0 if lane == 0 else lane_free(block, lane)

            kernel.push = lambda block, lane, data: 0 if lane == 0 else push(block, lane, data)
            kernel.push_quiet = (lambda block, lane, data:
                                 0 if lane == 0 else push_quiet(block, lane, data))
            kernel.lane_free = counted_free
            for i in range(300):  # lane 0: priorities 0..63
                await rt.send("echo", ping(seq=i, priority=5))
            looked = looks
            await rt.send("echo", ping(seq=-1, priority=255))
            urgent_in_lane = not rt.channel("echo").backlog.has(255, 255)
            # the kernel frees slots again
            kernel.push, kernel.push_quiet, kernel.lane_free = push, push_quiet, lane_free
            return [r.seq for r in await receive_n(rt, "echo", 301)], looked, urgent_in_lane

    seqs, looked, urgent_in_lane = run(main())
    # by the first feed, then once per LOOK_AFTER admissions (send() looks for progress itself)
    assert looked <= 1 + 300 // LOOK_AFTER, f"the full lane was looked at {looked} times"
    assert urgent_in_lane
    assert seqs == [-1, *range(300)]


@pytest.mark.parametrize("path", ["receive", "receive_many", "receive_array", "drain"])
def test_every_receive_path_feeds_lanes_found_full(kernels_pkg: Any, path: str) -> None:
    """Lanes marked full are fed again by whatever pops the kernel's responses, at once: not
    only by its bell or the refill timer (the loop is held still meanwhile, so neither runs),
    which left the kernel idle between batches of send_many/receive_many."""
    ping = kernels_pkg.Ping
    capacity, n = 8, 100

    async def main() -> tuple[int, int, list[int]]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=capacity) as rt:
            await rt.launch("echo", queue_size=4096)
            channel: Any = rt.channel("echo")
            channel.kernel.deactivate()  # the kernel takes nothing (the channel feeds on)
            for i in range(n):  # never suspends: the lane fills, the rest waits on the host
                assert await rt.send("echo", ping(seq=i))
            assert channel._full_lanes >> LANE & 1, "the full lane was not marked"
            channel.kernel.activate()
            for _ in range(10_000):  # the loop held still: no bell, no timer is handled
                if channel.device_counts()[0] >= capacity:
                    break
                time.sleep(0.001)
            waiting = len(channel.backlog)
            first: list[int]
            if path == "receive":
                first = [(await rt.receive("echo", timeout=10.0)).seq]
            elif path == "receive_many":
                first = [p.seq for p in await rt.receive_many("echo", n, timeout=10.0)]
            elif path == "receive_array":
                first = (await rt.receive_array("echo", n, timeout=10.0))["seq"].tolist()
            else:
                channel.poll_responses()  # what drain() does between its naps
                first = []
            fed = waiting - len(channel.backlog)
            rest = [p.seq for p in await receive_n(rt, "echo", n - len(first))]
            return waiting, fed, first + rest

    waiting, fed, seqs = run(main())
    assert waiting == n - capacity
    assert fed == capacity, f"popping the responses fed {fed} of the {waiting} waiting"
    assert seqs == list(range(n))


def test_receive_decodes_ahead_without_loss_or_reorder(kernels_pkg: Any) -> None:
    """receive() decodes a batch of the struct rows at the inbox's head at once and hands
    them out one by one; receive_array() and receive_many() in between take the rows after
    the ones handed out, never one twice, none lost."""
    ping = kernels_pkg.Ping
    n = 6000

    async def main() -> list[int]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=1024) as rt:
            await rt.launch("echo", queue_size=1 << 14)
            assert await rt.send_many("echo", [ping(seq=i) for i in range(n)]) == n
            await rt.drain("echo", timeout=30.0)
            seqs: list[int] = []
            turn = 0
            while len(seqs) < n:
                turn += 1
                if turn % 3 == 0:
                    seqs += (await rt.receive_array("echo", 7, timeout=10.0))["seq"].tolist()
                elif turn % 5 == 0:
                    seqs += [p.seq for p in await rt.receive_many("echo", 11, timeout=10.0)]
                else:
                    seqs.append((await rt.receive("echo", timeout=10.0)).seq)
            assert rt.telemetry("echo").received == n
            return seqs

    assert run(main()) == list(range(n))


@pytest.mark.parametrize("strategy", ["block", "reject", "drop_oldest", "drop_newest"])
def test_one_at_a_time_accounts_for_every_message(kernels_pkg: Any, strategy: str) -> None:
    """An active kernel with small lanes and a small queue, sent to one send() at a time by a
    sender that suspends only where 'block' waits, while a task receive()s one at a time:
    every accepted message is delivered once or is a dead letter, FIFO within a priority."""
    ping = kernels_pkg.Ping
    priorities = [128, 5, 200, 128, 70]
    n = 3000
    letters: list[Any] = []

    async def main() -> tuple[list[Any], set[int]]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=8,
                                     dead_letter_hook=letters.append) as rt:
            await rt.launch("echo", queue_size=32, backpressure=strategy)
            accepted: set[int] = set()
            got: list[Any] = []
            sending = True

            def owed() -> int:  # accepted, and neither delivered nor evicted yet
                return len(accepted) - len(got) - sum(d.message.seq in accepted for d in letters)

            async def consume() -> None:
                while sending or owed() > 0:
                    try:
                        got.append(await rt.receive("echo", timeout=0.05))
                    except asyncio.TimeoutError:
                        await asyncio.sleep(0)

            consumer = asyncio.ensure_future(consume())
            for i in range(n):
                try:
                    if await rt.send("echo", ping(seq=i, priority=priorities[i % 5]),
                                     timeout=10.0):
                        accepted.add(i)
                except QueueFullError:
                    assert strategy == "reject"
                    await asyncio.sleep(0)  # let the kernel's answers make room
            sending = False
            await asyncio.wait_for(consumer, 60.0)
            return got, accepted

    got, accepted = run(main())
    seqs = [r.seq for r in got]
    evicted = [d.message.seq for d in letters]
    assert len(seqs) == len(set(seqs)), "a response was delivered twice"
    if strategy in ("block", "reject"):
        assert not letters
    if strategy == "block":
        assert accepted == set(range(n))
    # drop_oldest evicts messages it had accepted; drop_newest refuses new ones (never accepted)
    assert set(seqs) | (set(evicted) & accepted) == accepted
    assert not set(seqs) & set(evicted)
    for p in set(priorities):  # FIFO within each priority
        mine = [s for s in seqs if priorities[s % 5] == p]
        assert mine == sorted(mine)


def test_send_and_receive_of_a_kernel_not_launched_raise_when_awaited(kernels_pkg: Any) -> None:
    """send() and receive() hand back the channel's own coroutine (one per message, not two);
    for a kernel that is not launched they still raise where they are awaited, as an async
    def does, not where they are called."""
    from ringgen import KernelStateError

    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            sending = rt.send("nope", kernels_pkg.Ping(seq=1))
            receiving = rt.receive("nope", timeout=1.0)
            for pending in (sending, receiving):
                with pytest.raises(KernelStateError, match="not launched"):
                    await pending
            # Launched between the call and the await: they go to it, as an async def's would.
            sending = rt.send("echo", kernels_pkg.Ping(seq=2))
            receiving = rt.receive("echo", timeout=10.0)
            await rt.launch("echo")
            assert await sending is True
            assert (await receiving).seq == 2

    run(main())
