"""Deadlines: many timed waits on one loop timer, each expiring at its own time."""

from __future__ import annotations

import asyncio
import time

import pytest

from ringgen.runtime.waiting import Deadlines, RoomWaiters

# Each wait must expire within 0.1 s of its deadline: run alone, not beside other tests' load.
pytestmark = pytest.mark.serial


def test_each_wait_expires_at_its_own_deadline_and_answered_ones_never() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        expired: dict[str, float] = {}
        start = time.monotonic()

        async def wait(name: str, timeout: float | None, answer_after: float | None = None) -> str:
            future: asyncio.Future[str] = loop.create_future()
            if answer_after is not None:
                loop.call_later(answer_after, future.set_result, name)
            try:
                return await deadlines.wait(future, timeout)
            except asyncio.TimeoutError:
                expired[name] = time.monotonic() - start
                raise

        # A long wait first (it sets the timer), shorter ones after it (they move it earlier),
        # an answered one, and one without a limit.
        results = await asyncio.gather(
            wait("long", 0.30), wait("short", 0.05), wait("middle", 0.15),
            wait("answered", 0.10, answer_after=0.01), wait("unlimited", None, answer_after=0.2),
            return_exceptions=True)
        assert results[3] == "answered" and results[4] == "unlimited"
        assert all(isinstance(r, asyncio.TimeoutError) for r in results[:3])
        assert set(expired) == {"long", "short", "middle"}
        for name, timeout in (("short", 0.05), ("middle", 0.15), ("long", 0.30)):
            assert timeout <= expired[name] < timeout + 0.1, (name, expired[name])  # 1 ms ticks
        assert deadlines.pending() == 0  # nothing left behind

    asyncio.run(main())


def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    async def main() -> None:
        deadlines = Deadlines(asyncio.get_running_loop())
        task = asyncio.ensure_future(deadlines.wait(asyncio.get_running_loop().create_future(), 5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert deadlines.pending() == 0

    asyncio.run(main())


def test_room_wakes_the_senders_that_fit_in_order_and_leaves_the_others_parked() -> None:
    """A batch waiting for eight places does not take the wake-up of one free place: the sender
    behind it that needs one goes, and the batch keeps its place at the head of the queue."""
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        deadlines, room = Deadlines(loop), RoomWaiters()
        woken: list[str] = []

        async def sender(name: str, need: int) -> None:
            assert await room.wait(deadlines, need, None)
            woken.append(name)

        tasks = [asyncio.ensure_future(sender(n, k)) for n, k in (("batch", 8), ("one", 1), ("two", 2))]
        await asyncio.sleep(0)
        room.wake(1)
        await asyncio.sleep(0)
        assert woken == ["one"] and len(room) == 2
        room.wake(10)  # the batch first, then what is left fits the next
        await asyncio.gather(*tasks)
        assert len(room) == 0
        return woken

    assert asyncio.run(main()) == ["one", "batch", "two"]


def test_a_timed_out_or_cancelled_room_wait_leaves_the_queue() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines, room = Deadlines(loop), RoomWaiters()
        assert not await room.wait(deadlines, 1, loop.time() + 0.002)
        cancelled = asyncio.ensure_future(room.wait(deadlines, 1, None))
        await asyncio.sleep(0)
        assert len(room) == 1
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert len(room) == 0
        room.wake(5)  # nobody left to wake: nothing happens
        room.wake_all()

    asyncio.run(main())
