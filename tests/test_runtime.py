"""RingKernelRuntime: exact priorities, backpressure, correlation, faults, telemetry, arrays,
shutdown — on every backend this machine has (the CPU backend everywhere)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from conftest import receive_n

from ringgen import (
    ActorContext,
    DeadLetterReason,
    KernelFaultError,
    KernelState,
    KernelStateError,
    QueueFullError,
    RingKernelRuntime,
)
from ringgen.codecs import struct_columns as structs
from ringgen.runtime.backends.cpu import CpuKernel


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_backend_is_chosen_and_reported(kernels_pkg: Any, backend: str) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            assert rt.backend == backend
            await rt.launch("echo")
            assert rt.telemetry("echo").backend == backend

    run(main())


def test_exact_priority_order_over_all_256_values(kernels_pkg: Any, backend: str) -> None:
    """Sent to a paused kernel in random order, two per priority: answered highest first,
    FIFO within a priority."""
    ping = kernels_pkg.Ping
    order = [(p, k) for p in range(256) for k in range(2)]
    random.Random(7).shuffle(order)
    by_priority: dict[int, list[int]] = {}

    async def main() -> list[Any]:
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            await rt.launch("echo", activate=False)
            for seq, (p, _) in enumerate(order):
                by_priority.setdefault(p, []).append(seq)
                await rt.send("echo", ping(seq=seq, priority=p))
            await rt.activate("echo")
            return await receive_n(rt, "echo", len(order))

    got = run(main())
    assert [r.priority for r in got] == sorted((p for p, _ in order), reverse=True)
    assert [r.seq for r in got] == [s for p in range(255, -1, -1) for s in by_priority[p]]


def test_urgent_message_overtakes_a_backlog(kernels_pkg: Any) -> None:
    async def main() -> list[int]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False, queue_size=4096)
            await rt.send_many("echo", [kernels_pkg.Ping(seq=i, priority=5) for i in range(2000)])
            await rt.send("echo", kernels_pkg.Ping(seq=-1, priority=255))
            await rt.activate("echo")
            return [r.seq for r in await receive_n(rt, "echo", 2001)]

    seqs = run(main())
    assert seqs[0] == -1 and seqs[1:] == list(range(2000))


@pytest.mark.parametrize("strategy", ["block", "reject", "drop_oldest", "drop_newest"])
def test_backpressure(kernels_pkg: Any, strategy: str) -> None:
    """A paused kernel with room for 5: exactly which messages go through, which are dropped,
    and the counts add up to what was sent."""
    ping = kernels_pkg.Ping
    msgs = [ping(seq=i, priority=p) for i, p in enumerate([10, 50, 10, 200, 50, 10, 90, 10])]
    letters: list[Any] = []

    async def main() -> tuple[list[int], Any]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu",
                                     dead_letter_hook=letters.append) as rt:
            await rt.launch("echo", activate=False, queue_size=5, backpressure=strategy)
            refused = 0
            for m in msgs:
                try:
                    await rt.send("echo", m, timeout=0.05)
                except QueueFullError:
                    assert strategy in ("block", "reject")
                    refused += 1
            await rt.activate("echo")
            expected = len(msgs) - refused - len(letters)  # a later drop may evict an earlier one
            got = [r.seq for r in await receive_n(rt, "echo", expected)]
            return got, rt.telemetry("echo")

    got, telemetry = run(main())
    dropped = [d.message.seq for d in letters]
    if strategy in ("block", "reject"):  # the first five got in; the rest were refused
        assert sorted(got) == [0, 1, 2, 3, 4] and dropped == []
    elif strategy == "drop_newest":
        assert sorted(got) == [0, 1, 2, 3, 4] and dropped == [5, 6, 7]
    else:  # drop_oldest: the oldest of the lowest priority goes first
        assert dropped == [0, 2, 5] and sorted(got) == [1, 3, 4, 6, 7]
    assert telemetry.dropped == len(dropped)
    assert len(got) + len(dropped) + (3 if strategy in ("block", "reject") else 0) == len(msgs)
    expected_reason = {"drop_newest": DeadLetterReason.DROPPED_NEWEST,
                       "drop_oldest": DeadLetterReason.DROPPED_OLDEST}.get(strategy)
    assert all(d.reason is expected_reason and strategy in d.detail for d in letters)


def test_blocked_sender_proceeds_when_room_frees(kernels_pkg: Any) -> None:
    async def main() -> list[int]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False, queue_size=2, backpressure="block")
            sender = asyncio.ensure_future(rt.send_many(
                "echo", [kernels_pkg.Ping(seq=i) for i in range(10)], timeout=5.0))
            await asyncio.sleep(0.05)
            assert not sender.done()  # blocked on the full queue
            await rt.activate("echo")
            assert await sender == 10
            return sorted(r.seq for r in await receive_n(rt, "echo", 10))

    assert run(main()) == list(range(10))


def test_blocked_senders_wake_as_room_frees_not_all_at_once(kernels_pkg: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for one wakes one blocked sender, first blocked first: waking all of them (to find
    the room taken and park again) cost each place freed a wake-up per waiting sender."""
    from ringgen.runtime.waiting import RoomWaiters

    parks = 0
    original = RoomWaiters.wait

    async def counted(*args: Any) -> bool:
        nonlocal parks
        parks += 1
        return await original(*args)

    monkeypatch.setattr(RoomWaiters, "wait", counted)

    async def main() -> list[int]:
        # lanes as small as they come: the backlog stays full while the kernel works
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=1) as rt:
            await rt.launch("echo", activate=False, queue_size=2, backpressure="block")
            senders = [asyncio.ensure_future(rt.send("echo", kernels_pkg.Ping(seq=i), timeout=10.0))
                       for i in range(N)]
            for _ in range(500):  # each sender runs to its admission or its first park
                if parks >= N - 2:
                    break
                await asyncio.sleep(0.01)
            assert sum(s.done() for s in senders) == 2 and parks == N - 2  # the rest are blocked
            await rt.activate("echo")
            assert all(await asyncio.gather(*senders))
            return sorted(r.seq for r in await receive_n(rt, "echo", N))

    N = 60
    assert run(main()) == list(range(N))
    # each blocked sender parks about once, twice at most; woken all at once, they parked
    # again for every place freed (hundreds of times in all)
    assert parks <= 2 * (N - 2), parks


def test_a_sender_cancelled_once_woken_passes_its_wake_up_on(kernels_pkg: Any) -> None:
    async def main() -> bool:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False, queue_size=1, backpressure="block")
            await rt.send("echo", kernels_pkg.Ping(seq=0))
            first = asyncio.ensure_future(rt.send("echo", kernels_pkg.Ping(seq=1)))
            second = asyncio.ensure_future(rt.send("echo", kernels_pkg.Ping(seq=2), timeout=5.0))
            await asyncio.sleep(0.05)
            await rt.activate("echo")  # room for one: `first` is woken, and cancelled unrun
            first.cancel()
            return await second  # else it waits for a place nobody frees again

    assert run(main()) is True


def test_concurrent_requests_get_their_own_replies(kernels_pkg: Any, backend: str) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            await rt.launch("echo4")
            reqs = [kernels_pkg.Ping(seq=i, priority=i % 256) for i in range(100)]
            replies = await asyncio.gather(*(rt.request("echo4", r, timeout=10.0) for r in reqs))
            for req, rep in zip(reqs, replies, strict=True):
                assert rep.correlation_id == req.message_id and rep.seq == req.seq
            t = rt.telemetry("echo4")
            assert (t.sent, t.received, t.processed) == (100, 100, 100)
            assert t.latency_p50_us is not None and t.latency_p99_us >= t.latency_p50_us

    run(main())


def test_lone_request_is_answered_by_the_native_wait(kernels_pkg: Any, backend: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone request() waits for its reply in one native call: with a long enough spin, every
    reply is found there and the loop's own waiting (want_responses) is never needed; with no
    spin, every request takes the loop's path. Replies are correct both ways."""
    from ringgen.runtime import device_channel

    async def main(spin: float) -> int:
        loop_waits = 0
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            await rt.launch("echo")
            channel: Any = rt.channel("echo")
            await rt.request("echo", kernels_pkg.Ping(seq=-1), timeout=10.0)  # warm
            monkeypatch.setattr(device_channel, "REQUEST_SPIN_S", spin)
            original = channel.want_responses

            def counted() -> None:
                nonlocal loop_waits
                loop_waits += 1
                original()

            channel.want_responses = counted
            for i in range(50):
                req = kernels_pkg.Ping(seq=i)
                rep = await rt.request("echo", req, timeout=10.0)
                assert rep.correlation_id == req.message_id and rep.seq == i
            assert rt.telemetry("echo").received == 51
        return loop_waits

    assert run(main(2.0)) == 0
    assert run(main(0.0)) == 50


def test_request_of_a_message_sent_already_is_refused(kernels_pkg: Any) -> None:
    """A message id names one send: request() of a message sent already (by send(), or by an
    earlier request()) would be answered by that send's reply, the second reply left over in
    the inbox, so it is refused and nothing is enqueued; the same message to another kernel,
    and a new message, are requests of their own."""
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            await rt.launch("echo4")
            sent = kernels_pkg.Ping(seq=1)
            assert await rt.send("echo", sent)
            with pytest.raises(KernelStateError, match="was sent to it already"):
                await rt.request("echo", sent, timeout=5.0)
            asked = kernels_pkg.Ping(seq=2)
            assert (await rt.request("echo", asked, timeout=5.0)).correlation_id == asked.message_id
            with pytest.raises(KernelStateError, match="was sent to it already"):
                await rt.request("echo", asked, timeout=5.0)
            batch = [kernels_pkg.Ping(seq=i) for i in range(3, 40)]
            assert await rt.send_many("echo", batch) == len(batch)
            with pytest.raises(KernelStateError, match="was sent to it already"):
                await rt.request("echo", batch[-1], timeout=5.0)
            other = await rt.request("echo4", sent, timeout=5.0)
            assert other.correlation_id == sent.message_id
            got = await receive_n(rt, "echo", 1 + len(batch))
            assert [p.seq for p in got] == [1, *range(3, 40)]  # one reply per send, none twice
            assert await rt.receive_many("echo", 10, timeout=0.1) == []
            assert rt.telemetry("echo").sent == 2 + len(batch)

    run(main())


def test_lone_request_amid_other_responses_gets_its_own(kernels_pkg: Any) -> None:
    """Responses to earlier send()s that come with a lone request's reply, or instead of it,
    go to the inbox in order; the request returns its own reply."""
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            for round_ in range(20):
                for i in range(5):
                    assert await rt.send("echo", kernels_pkg.Ping(seq=100 * round_ + i))
                req = kernels_pkg.Ping(seq=100 * round_ + 99)
                rep = await rt.request("echo", req, timeout=5.0)
                assert rep.correlation_id == req.message_id and rep.seq == req.seq
            got = await receive_n(rt, "echo", 100)
            assert [p.seq for p in got] == [100 * r + i for r in range(20) for i in range(5)]
            t = rt.telemetry("echo")
            assert (t.sent, t.received) == (120, 120)

    run(main())


def test_receive_takes_one_at_a_time_from_a_collected_array(kernels_pkg: Any) -> None:
    """Responses collected as one struct array (nobody awaited them) are taken by receive()
    one struct at a time, in order, interleaved with receive_many() and receive_array()
    without losing or repeating one."""
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            assert await rt.send_many("echo", [kernels_pkg.Ping(seq=i) for i in range(50)]) == 50
            await rt.drain("echo", timeout=10.0)
            channel: Any = rt.channel("echo")
            channel.poll_responses()
            assert channel.replies.inbox_count == 50
            assert isinstance(channel.replies.inbox[0], np.ndarray)  # one chunk of structs
            seqs = [(await rt.receive("echo", timeout=1.0)).seq for _ in range(3)]
            seqs += [p.seq for p in await rt.receive_many("echo", 5, timeout=1.0)]
            seqs.append((await rt.receive("echo", timeout=1.0)).seq)
            seqs += [int(s) for s in (await rt.receive_array("echo", 10, timeout=1.0))["seq"]]
            seqs += [(await rt.receive("echo", timeout=1.0)).seq for _ in range(31)]
            assert seqs == list(range(50))
            with pytest.raises(asyncio.TimeoutError):
                await rt.receive("echo", timeout=0.05)
            assert rt.telemetry("echo").received == 50

    run(main())


def test_concurrent_receivers_share_the_responses_and_time_out(kernels_pkg: Any) -> None:
    """receive(), receive_many() and receive_array() awaiting one kernel together each get
    distinct responses, none lost or repeated; those left waiting when another takes the last
    responses return at their timeout (wait_for only bounds a hang: no performance limit).
    A counter must be added to after the await: `got += len(await ...)` reads `got` before
    suspending and loses the other receivers' updates (a repro once mistook that for a hang)."""
    n = 60_000

    async def main() -> list[int]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=1024) as rt:
            await rt.launch("echo", queue_size=1 << 17)
            batch = np.zeros(n, dtype=kernels_pkg.DTYPES["Ping"])
            batch["seq"] = np.arange(n)
            seqs: list[int] = []

            async def one() -> list[int]:
                try:
                    return [(await rt.receive("echo", timeout=0.2)).seq]
                except asyncio.TimeoutError:
                    return []

            async def many() -> list[int]:
                return [p.seq for p in await rt.receive_many("echo", 5000, timeout=0.2)]

            async def rows() -> list[int]:
                return (await rt.receive_array("echo", 1 << 14, timeout=0.2))["seq"].tolist()

            async def consume(take: Callable[[], Awaitable[list[int]]]) -> None:
                while len(seqs) < n:
                    seqs.extend(await asyncio.wait_for(take(), 5.0))

            receivers = asyncio.gather(consume(one), consume(many), consume(rows))
            for at in range(0, n, 1 << 14):
                chunk = batch[at:at + (1 << 14)]
                assert await rt.send_array("echo", chunk) == len(chunk)
            await asyncio.wait_for(receivers, 30.0)
            assert rt.telemetry("echo").received == n
            return seqs

    assert sorted(run(main())) == list(range(n))


def test_late_reply_goes_to_the_dead_letters(kernels_pkg: Any) -> None:
    async def main() -> RingKernelRuntime:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False)
            late = kernels_pkg.Ping(seq=1)
            with pytest.raises(asyncio.TimeoutError, match="late reply will go to the dead"):
                await rt.request("echo", late, timeout=0.05)
            await rt.activate("echo")
            nxt = await rt.request("echo", kernels_pkg.Ping(seq=2), timeout=5.0)
            assert nxt.seq == 2  # not the late reply
            deadline = time.monotonic() + 5
            while not rt.dead_letters and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            [letter] = rt.dead_letters
            assert letter.message.correlation_id == late.message_id
            assert letter.reason is DeadLetterReason.LATE_REPLY
            return rt

    run(main())


def test_wrong_message_type_is_refused_and_nothing_enqueued(kernels_pkg: Any) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False)
            with pytest.raises(TypeError, match="takes Ping messages, not Numbers"):
                await rt.send("echo", kernels_pkg.Numbers(values=[1]))
            assert rt.telemetry("echo").queue_depth == 0 and rt.telemetry("echo").sent == 0

    run(main())


def test_crashing_device_handler_fails_pending_requests(kernels_pkg: Any) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("crasher")
            await rt.launch("echo")
            ok = await rt.request("crasher", kernels_pkg.Ping(seq=1), timeout=5.0)
            assert ok.seq == 1
            with pytest.raises(KernelFaultError, match="SIGSEGV"):
                await rt.request("crasher", kernels_pkg.Ping(seq=2, mode=1), timeout=5.0)
            assert rt.state("crasher") is KernelState.FAILED
            with pytest.raises(KernelFaultError, match="failed"):
                await rt.send("crasher", kernels_pkg.Ping(seq=3))
            assert (await rt.request("echo", kernels_pkg.Ping(seq=4), timeout=5.0)).seq == 4

    run(main())


def test_send_times_of_unanswered_messages_are_bounded(kernels_pkg: Any, monkeypatch: Any) -> None:
    """A host actor that never answers (fire-and-forget) must not make the runtime remember
    the send time of every message it was sent."""
    from ringgen.runtime import replies

    monkeypatch.setattr(replies, "MEMORY", 10)

    async def silent(ctx: ActorContext) -> None:
        while not ctx.should_terminate:
            await ctx.receive(timeout=0.05)

    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("silent", actor=silent)
            await rt.send_many("silent", [kernels_pkg.Ping(seq=i) for i in range(1000)])
            await rt.drain("silent", timeout=5.0)
            assert 0 < len(rt.channel("silent").replies.sent_at) <= 10

    run(main())


def test_host_actor_that_raises_fails_its_requests(kernels_pkg: Any) -> None:
    async def broken(ctx: ActorContext) -> None:
        msg = await ctx.receive()
        raise RuntimeError(f"cannot handle {msg.seq}")

    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("broken", actor=broken)
            with pytest.raises(KernelFaultError, match="RuntimeError: cannot handle 5"):
                await rt.request("broken", kernels_pkg.Ping(seq=5), timeout=5.0)
            assert rt.state("broken") is KernelState.FAILED
            assert rt.telemetry("broken").errors == 1

    run(main())


def test_receive_on_a_terminated_kernel(kernels_pkg: Any) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            await rt.send("echo", kernels_pkg.Ping(seq=1))
            await asyncio.sleep(0.05)
            await rt.terminate("echo")
            assert (await rt.receive("echo", timeout=1.0)).seq == 1  # what it answered is kept
            with pytest.raises(KernelStateError, match="terminated"):
                await rt.receive("echo", timeout=1.0)
            with pytest.raises(KernelStateError, match="terminated"):
                await rt.send("echo", kernels_pkg.Ping(seq=2))

    run(main())


def test_terminate_sends_the_unprocessed_backlog_to_the_dead_letters(kernels_pkg: Any) -> None:
    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo", activate=False)
            await rt.send_many("echo", [kernels_pkg.Ping(seq=i) for i in range(3)])
            await rt.terminate("echo")
            assert sorted(d.message.seq for d in rt.dead_letters) == [0, 1, 2]

    run(main())


def test_requests_left_in_the_lanes_reach_the_dead_letters(kernels_pkg: Any) -> None:
    """A kernel stops between two requests: what it never took is handed back as dead letters,
    on terminate and on a crash, and the counts add up."""
    ping = kernels_pkg.Ping

    async def terminated() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("crasher")
            # seq 0 in a lane of its own: a round takes a batch from one lane only
            await rt.send_many("crasher", [ping(seq=0, mode=5, priority=200)] +
                               [ping(seq=i) for i in range(1, 11)])
            deadline = time.monotonic() + 5  # until seq 0 sleeps in the handler, 1..10 in a lane
            while rt.telemetry("crasher").queue_depth != 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            await rt.terminate("crasher")
            assert sorted(d.message.seq for d in rt.dead_letters) == list(range(1, 11))
            assert all(isinstance(d.message, ping) and d.reason is DeadLetterReason.TERMINATED
                       for d in rt.dead_letters)
            t = rt.telemetry("crasher")
            assert (t.sent, t.processed, t.dropped, t.in_flight) == (11, 1, 10, 0)

    async def crashed() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("crasher")
            await rt.send_many("crasher", [ping(seq=0, mode=1, priority=200)] +
                               [ping(seq=i) for i in range(1, 11)])
            deadline = time.monotonic() + 5
            while rt.state("crasher") is not KernelState.FAILED and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            # the request that crashed the kernel too (it was handling it)
            assert sorted(d.message.seq for d in rt.dead_letters) == list(range(11))
            assert all(d.reason is DeadLetterReason.KERNEL_FAILED and "SIGSEGV" in d.detail
                       for d in rt.dead_letters)
            t = rt.telemetry("crasher")
            assert (t.sent, t.processed, t.dropped, t.in_flight) == (11, 0, 11, 0)

    run(terminated())
    run(crashed())


def test_drain_waits_until_everything_accepted_was_processed(kernels_pkg: Any) -> None:
    ping = kernels_pkg.Ping

    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("sink")
            await rt.send_many("sink", [ping(seq=i) for i in range(500)])
            await rt.drain("sink", timeout=10.0)
            t = rt.telemetry("sink")
            assert (t.sent, t.processed, t.in_flight) == (500, 500, 0)

            await rt.launch("crasher")
            await rt.send("crasher", ping(seq=1, mode=5))  # 200 ms in the handler
            with pytest.raises(asyncio.TimeoutError, match="1 messages in flight"):
                await rt.drain("crasher", timeout=0.02)
            await rt.drain(timeout=10.0)  # every kernel
            assert rt.telemetry("crasher").processed == 1
            assert (await rt.receive("crasher", timeout=1.0)).seq == 1  # responses stay

            await rt.deactivate("crasher")
            await rt.send("crasher", ping(seq=2))
            with pytest.raises(KernelStateError, match=r"paused.*activate it first"):
                await rt.drain("crasher")

    run(main())


def test_a_watcher_thread_wakes_the_loop_as_on_a_gpu(kernels_pkg: Any, monkeypatch: Any) -> None:
    """How the CUDA backend wakes the event loop (a GPU rings no bell: a host thread watches
    the rings and writes the eventfd), run on the CPU backend with the runner's writes off."""
    monkeypatch.setattr(CpuKernel, "kernel_writes_notify", False)
    ping = kernels_pkg.Ping

    async def main() -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("crasher")
            for i in range(50):
                assert (await rt.request("crasher", ping(seq=i), timeout=5.0)).seq == i
            # 200 ms in the handler, far beyond the loop's own polling: only the watcher wakes it
            assert (await rt.request("crasher", ping(seq=99, mode=5), timeout=5.0)).seq == 99
            replies = await asyncio.gather(*(rt.request("crasher", ping(seq=i), timeout=5.0)
                                             for i in range(100)))
            assert [r.seq for r in replies] == list(range(100))
            await rt.send("crasher", ping(seq=7, mode=5))
            assert (await rt.receive("crasher", timeout=5.0)).seq == 7

    run(main())


@pytest.mark.serial  # shutdown within 1 s
def test_shutdown_under_a_second_with_idle_actors(kernels_pkg: Any) -> None:
    async def idle(ctx: ActorContext) -> None:
        while not ctx.should_terminate:
            await ctx.receive()  # no timeout

    async def main() -> float:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            for i in range(3):
                await rt.launch(f"idle{i}", actor=idle)
            await rt.launch("echo")
            await rt.launch("stats")
            start = time.monotonic()
        return time.monotonic() - start

    assert run(main()) < 1.0


def test_arrays_in_and_out_without_message_objects(kernels_pkg: Any, backend: str) -> None:
    async def main() -> np.ndarray:
        async with RingKernelRuntime(kernels_pkg, backend=backend) as rt:
            await rt.launch("echo", lane_capacity=1024)
            batch = np.zeros(10_000, dtype=kernels_pkg.DTYPES["Ping"])
            batch["seq"] = np.arange(10_000)
            batch["priority"] = 128
            assert await rt.send_array("echo", batch) == 10_000
            got: list[np.ndarray] = []
            while sum(map(len, got)) < 10_000:
                got.append(await rt.receive_array("echo", 4096, timeout=10.0))
            return structs.concatenate(got)

    out = run(main())
    assert out.dtype == kernels_pkg.DTYPES["Pong"]
    assert sorted(out["seq"].tolist()) == list(range(10_000))


def test_telemetry_counts(kernels_pkg: Any) -> None:
    async def main() -> Any:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("crasher")
            await rt.send_many("crasher", [kernels_pkg.Ping(seq=i, mode=4 if i % 2 else 0)
                                           for i in range(10)])
            await receive_n(rt, "crasher", 10)
            return rt.telemetry("crasher")

    t = run(main())
    assert (t.sent, t.received, t.processed, t.errors, t.dropped) == (10, 10, 10, 5, 0)
    assert t.queue_depth == 0 and t.in_flight == 0 and t.state == "active"


@pytest.mark.slow
def test_soak_a_million_messages_through_a_pipeline_of_device_kernels(kernels_pkg: Any) -> None:
    """echo4 (4 blocks) then echo, arrays with mixed priorities: none lost or duplicated."""
    total, chunk = 1_000_000, 50_000
    rng = np.random.default_rng(3)

    async def main() -> np.ndarray:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", lane_capacity=2048) as rt:
            await rt.launch("echo4", queue_size=1 << 20)
            await rt.launch("echo", queue_size=1 << 20)
            dtype_in = kernels_pkg.DTYPES["Ping"]
            seen: list[np.ndarray] = []
            received = 0

            async def relay() -> None:
                nonlocal received
                forwarded = 0
                while forwarded < total:
                    mid = await rt.receive_array("echo4", chunk, timeout=30.0)
                    assert len(mid), "stage 1 stalled"
                    onward = np.zeros(len(mid), dtype=dtype_in)
                    onward["seq"], onward["priority"] = mid["seq"], mid["priority"]
                    await rt.send_array("echo", onward)
                    forwarded += len(mid)

            async def sink() -> None:
                nonlocal received
                while received < total:
                    out = await rt.receive_array("echo", chunk, timeout=30.0)
                    assert len(out), "stage 2 stalled"
                    seen.append(out["seq"].copy())
                    received += len(out)

            tasks = [asyncio.ensure_future(relay()), asyncio.ensure_future(sink())]
            for start in range(0, total, chunk):
                batch = np.zeros(chunk, dtype=dtype_in)
                batch["seq"] = np.arange(start, start + chunk)
                batch["priority"] = rng.integers(0, 256, chunk)
                await rt.send_array("echo4", batch)
            await asyncio.wait_for(asyncio.gather(*tasks), 240)
            return np.concatenate(seen)  # plain int64 arrays

    seqs = run(main())
    assert len(seqs) == total
    assert np.array_equal(np.sort(seqs), np.arange(total))  # none lost, none duplicated
