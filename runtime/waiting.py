"""Awaiting with timeouts on the event loop: `Deadlines`, and queues of waiters.

A request or a receive is usually answered within microseconds, so the way it times out must
cost less than that. asyncio's call_later costs ~1.6 us per wait (a TimerHandle, a heap push,
and a cancel that leaves the handle in the heap until it is due); `asyncio.wait_for` adds a
task on top. `Deadlines` keeps a wait's deadline as a dict entry and one loop timer, set for
the earliest deadline, that expires what is due when it fires and re-arms for the next.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any


class Deadlines:
    """Timeouts of the futures awaited on one event loop, with one timer at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[asyncio.Future[Any], float] = {}  # future -> loop.time() it expires
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def wait(self, future: asyncio.Future[Any], timeout: float | None) -> Any:
        """await `future` for at most `timeout` s (None: no limit); asyncio.TimeoutError after."""
        if timeout is None:
            return await future
        at = self.loop.time() + timeout
        self._due[future] = at
        if at < self._timer_at:
            self._arm(at)
        try:
            return await future
        finally:
            self._due.pop(future, None)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self.loop.time()
        for future, at in list(self._due.items()):
            if at <= now:
                del self._due[future]
                if not future.done():
                    future.set_exception(asyncio.TimeoutError())
        if self._due:  # the waits still running: the timer follows the earliest of them
            self._arm(min(self._due.values()))


async def wait_in(deadlines: Deadlines, waiters: deque[asyncio.Future[None]],
                  deadline: float | None) -> bool:
    """Park in a queue of waiters until wake_all() or the loop.time() `deadline`; False if the
    deadline came first. The woken caller re-checks its own condition."""
    waiter: asyncio.Future[None] = deadlines.loop.create_future()
    waiters.append(waiter)
    try:
        left = None if deadline is None else max(deadline - deadlines.loop.time(), 0.0)
        await deadlines.wait(waiter, left)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


def wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    """Resolve every waiting future of a queue of waiters; each then re-checks its condition."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
