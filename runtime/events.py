"""Lifecycle events: `runtime.events()`, an async stream of what happens to each kernel
(launched, activated, deactivated, failed with its reason, restarted, gave_up, terminated),
for the user's own logging and alerting.

    async for event in runtime.events():
        if event.kind is EventKind.GAVE_UP:
            page_someone(event.kernel_id, event.reason)

Every stream gets every event published after it was opened, in order. A stream is bounded
(`capacity` events): a consumer that falls that far behind loses the oldest events it has not
read, and the next event it reads says how many in `missed`, so memory never grows with a slow
consumer and it still knows that it lost some. A stream ends when the runtime closes (after the
`terminated` events of its shutdown); one that is dropped unread is forgotten (weakly held).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
import weakref
from collections import deque

from ringgen.errors import ValidationError

DEFAULT_CAPACITY = 1000  # events one stream keeps unread before it drops the oldest


class EventKind(enum.Enum):
    LAUNCHED = "launched"  # launch() started it (a restart is RESTARTED instead)
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    FAILED = "failed"  # reason: why (a crash, a signal, a trap, a region fault, a hang)
    RESTARTED = "restarted"  # supervision relaunched it; restarts: how many times so far
    GAVE_UP = "gave_up"  # past max_restarts within within_s: it stays FAILED; reason says so
    TERMINATED = "terminated"  # terminate(), or the runtime's shutdown


@dataclasses.dataclass(frozen=True)
class Event:
    kind: EventKind
    kernel_id: str
    time: float  # time.time() when it happened
    reason: str | None = None  # FAILED, GAVE_UP: why; RESTARTED: the failure it came back from
    restarts: int = 0  # restarts of this kernel id so far (since its last launch())
    missed: int = 0  # events this stream dropped just before this one (a consumer too slow)


class EventStream:
    """One consumer's view: an async iterator of Events (see the module's docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._events: deque[Event] = deque()
        self._capacity = capacity
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._events) >= self._capacity:  # too slow a consumer: the oldest goes, and
            lost = self._events.popleft()         # the event now first says so
            count = lost.missed + 1
            if self._events:
                head = self._events[0]
                self._events[0] = dataclasses.replace(head, missed=head.missed + count)
            else:
                event = dataclasses.replace(event, missed=event.missed + count)
        self._events.append(event)
        self._wake()

    def close(self) -> None:
        """No more events: the iterator ends once the ones already here are read."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._events.popleft()

    def get_nowait(self) -> Event | None:
        """The next event if one is here, else None."""
        return self._events.popleft() if self._events else None

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` s (None on timeout or once closed)."""
        if self._events:  # without a wait: wait_for(..., 0) would not even look
            return self.get_nowait()
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except (asyncio.TimeoutError, StopAsyncIteration):
            return None


class EventBus:
    """The runtime's publisher: every open stream gets every event."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._closed = False

    def stream(self, loop: asyncio.AbstractEventLoop, capacity: int) -> EventStream:
        if capacity < 1:
            raise ValidationError(f"events(capacity=...) must be at least 1; got {capacity!r}")
        stream = EventStream(loop, capacity)
        if self._closed:
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    def publish(self, kind: EventKind, kernel_id: str, reason: str | None = None,
                restarts: int = 0) -> None:
        event = Event(kind, kernel_id, time.time(), reason, restarts)
        for stream in list(self._streams):
            stream._put(event)

    def reopen(self) -> None:
        """The runtime was entered (again): new streams stay open."""
        self._closed = False

    def close(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            stream.close()
        self._streams = weakref.WeakSet()
