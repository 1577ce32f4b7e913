"""Awaiting with timeouts on the event loop: `Deadlines`, and queues of waiters.

A request or a receive is usually answered within microseconds, so the way it times out must
cost less than that. asyncio's call_later costs ~1.6 us per wait (a TimerHandle, a heap push,
and a cancel that leaves the handle in the heap until it is due); `asyncio.wait_for` adds a
task on top. `Deadlines` files each wait under its deadline rounded up to the millisecond, in a
set per millisecond, and keeps one loop timer, set for the earliest millisecond that has waits:
a wait costs two set operations, and expiring is proportional to what expires.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from typing import Any

TICKS_PER_S = 1000  # deadlines are kept to this resolution: a timeout fires up to 1 ms late


class Deadlines:
    """Timeouts of the futures awaited on one event loop, with one timer at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[int, set[asyncio.Future[Any]]] = {}  # tick -> futures expiring then
        self._ticks: list[int] = []  # heap of the keys of _due (and of ticks emptied since)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick = math.inf

    async def wait(self, future: asyncio.Future[Any], timeout: float | None) -> Any:
        """await `future` for at most `timeout` s (None: no limit); asyncio.TimeoutError after."""
        if timeout is None:
            return await future
        tick = math.ceil((self.loop.time() + timeout) * TICKS_PER_S)
        waits = self._due.get(tick)
        if waits is None:
            waits = self._due[tick] = set()
            heapq.heappush(self._ticks, tick)
            if tick < self._timer_tick:
                self._arm(tick)
        waits.add(future)
        try:
            return await future
        finally:
            waits.discard(future)

    def pending(self) -> int:
        """Timed waits not yet over."""
        return sum(len(waits) for waits in self._due.values())

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = self.loop.call_at(tick / TICKS_PER_S, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_tick = None, math.inf
        now = self.loop.time() * TICKS_PER_S
        while self._ticks and (self._ticks[0] <= now or not self._due[self._ticks[0]]):
            for future in self._due.pop(heapq.heappop(self._ticks)):
                if not future.done():
                    future.set_exception(asyncio.TimeoutError())
        if self._ticks:  # the timer follows the earliest tick that still has waits
            self._arm(self._ticks[0])


async def wait_in(deadlines: Deadlines, waiters: deque[asyncio.Future[None]],
                  deadline: float | None) -> bool:
    """Park in a queue of waiters until wake_all() or the loop.time() `deadline`; False if the
    deadline came first. The woken caller re-checks its own condition."""
    waiter: asyncio.Future[None] = deadlines.loop.create_future()
    waiters.append(waiter)
    try:
        return await _woken(deadlines, waiter, deadline)
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


async def _woken(deadlines: Deadlines, waiter: asyncio.Future[None], deadline: float | None) -> bool:
    """Awaits `waiter` until the loop.time() `deadline`: True if it was resolved, False if the
    deadline came first."""
    left = None if deadline is None else max(deadline - deadlines.loop.time(), 0.0)
    try:
        await deadlines.wait(waiter, left)
        return True
    except asyncio.TimeoutError:
        return False


def wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    """Resolve every waiting future of a queue of waiters; each then re-checks its condition."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)


class RoomWaiters:
    """Senders parked until a queue has room, each for the `need` places its messages take.

    space freed wakes, first parked first, each sender whose need fits in what is left of the
    room, and no more: rather than every one of them to find the room taken and park again (a
    thundering herd, with a new place at the back of the queue for each). A sender that does not
    fit stays parked without taking a wake-up, so a batch waiting for many places never holds
    back a message behind it that would fit in one."""

    def __init__(self) -> None:
        self._parked: deque[tuple[asyncio.Future[None], int]] = deque()

    def __len__(self) -> int:
        return len(self._parked)

    async def wait(self, deadlines: Deadlines, need: int, deadline: float | None) -> bool:
        """Park until wake() finds room for `need` places, or wake_all(), or the loop.time()
        `deadline`; False if the deadline came first. The woken sender re-checks the room."""
        waiter: asyncio.Future[None] = deadlines.loop.create_future()
        entry = (waiter, need)
        self._parked.append(entry)
        try:
            return await _woken(deadlines, waiter, deadline)
        finally:
            # woken: wake() took it off already; timed out or cancelled: it leaves by itself
            if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
                try:
                    self._parked.remove(entry)
                except ValueError:  # wake() dropped it, done, on its way
                    pass

    def wake(self, room: int) -> None:
        """Wake the parked senders, in the order they parked, whose needs fit in `room` places
        together; the others stay parked, in their order."""
        kept: deque[tuple[asyncio.Future[None], int]] = deque()
        while room > 0 and self._parked:
            waiter, need = entry = self._parked.popleft()
            if waiter.done():  # timed out or cancelled: it leaves by itself
                continue
            if need <= room:
                waiter.set_result(None)
                room -= need
            else:
                kept.append(entry)
        kept.extend(self._parked)
        self._parked = kept

    def wake_all(self) -> None:
        """Wake every parked sender (the queue closed: each re-checks and raises)."""
        parked, self._parked = self._parked, deque()
        for waiter, _ in parked:
            if not waiter.done():
                waiter.set_result(None)
