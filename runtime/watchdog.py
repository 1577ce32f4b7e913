"""The hang watchdog: a device kernel whose heartbeat stands still while it holds requests is
hung (a handler in an endless loop, a thread that never reaches a barrier) and is failed like a
crashed one, so that nobody waits on it forever.

Every block bumps its heartbeat on each poll round, while it waits for room in its output ring,
and at least every RG_MAX_IDLE_NS while idle (a second on the CPU backend); only a
handler that does not return, or a stopped process, holds it still. A still heartbeat alone
(a SIGSTOPped runner with nothing to do) shows in telemetry as `stalled` and fails nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from ringgen.runtime.backends.base import RingKernel

DEFAULT_HANG_TIMEOUT = 30.0  # seconds: longer than any handler should run, short of forever
MIN_HANG_TIMEOUT = 2.0  # an idle CPU block's heartbeat moves every second


class HeartbeatWatch:
    """One kernel's blocks: the heartbeat last seen, and when each last moved."""

    def __init__(self, kernel: RingKernel) -> None:
        self.kernel = kernel
        now = time.monotonic()
        self._seen = [-1] * kernel.grid
        self._moved = [now] * kernel.grid

    def stalled_for(self) -> float:
        """Seconds since the stillest block's heartbeat last moved (as far as looks tell)."""
        now = time.monotonic()
        for block, status in enumerate(self.kernel.status()):
            if status.heartbeat != self._seen[block]:
                self._seen[block] = status.heartbeat
                self._moved[block] = now
        return now - min(self._moved)


class Watchdog:
    """Looks at every watched kernel eight times per `hang_timeout`; calls a kernel's `hung`
    once its heartbeat has stood still that long while `holds()` says it has requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hang_timeout: float) -> None:
        self.loop = loop
        self.hang_timeout = hang_timeout
        self._watched: dict[object, tuple[HeartbeatWatch, Callable[[], bool],
                                          Callable[[str], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, key: object, kernel: RingKernel, holds: Callable[[], bool],
              hung: Callable[[str], None]) -> None:
        self._watched[key] = (HeartbeatWatch(kernel), holds, hung)
        if self._timer is None:
            self._timer = self.loop.call_later(self.period, self._tick)

    def forget(self, key: object) -> None:
        self._watched.pop(key, None)

    @property
    def period(self) -> float:
        return self.hang_timeout / 8  # a look costs tens of microseconds per kernel

    def stalled_for(self, key: object) -> float | None:
        """How long the kernel's heartbeat has stood still; None when it is not watched."""
        entry = self._watched.get(key)
        if entry is None or entry[0].kernel.closed:
            return None
        return entry[0].stalled_for()

    def _tick(self) -> None:
        self._timer = None
        for key, (watch, holds, hung) in list(self._checked()):
            still = watch.stalled_for()
            if still >= self.hang_timeout and holds():
                self.forget(key)
                hung(f"hung: no heartbeat for {still:.1f} s while it held requests (a handler "
                     "that does not return, or a thread that never reaches a barrier); the "
                     "watchdog stopped it (hang_timeout)")
        if self._watched:
            self._timer = self.loop.call_later(self.period, self._tick)

    def _checked(self) -> Iterable[tuple[object, tuple[HeartbeatWatch, Callable[[], bool],
                                                          Callable[[str], None]]]]:
        """The watched kernels still running (those released meanwhile are forgotten)."""
        for key, entry in list(self._watched.items()):
            if entry[0].kernel.closed:
                self.forget(key)
            else:
                yield key, entry

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()
