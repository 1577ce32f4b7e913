"""The hang watchdog: a device kernel whose heartbeat stands still while it holds requests is
hung (a handler in an endless loop, a thread that never reaches a barrier) and is failed like a
crashed one, so that nobody waits on it forever.

Every block bumps its heartbeat on each poll round, while it waits for room in its output ring,
and at least every RG_MAX_IDLE_NS while idle (a second on the CPU backend); only a
handler that does not return, or a stopped process, holds it still. A still heartbeat alone
(a SIGSTOPped runner with nothing to do) shows in telemetry as `stalled` and fails nothing.

Each kernel has its own limit: `launch(..., watchdog_s=S)`, by default the runtime's
`hang_timeout`, None for none (debugging: a handler stopped in gdb is not hung).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

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


class _Watched:
    def __init__(self, watch: HeartbeatWatch, timeout: float, holds: Callable[[], bool],
                 hung: Callable[[str], None]) -> None:
        self.watch, self.timeout, self.holds, self.hung = watch, timeout, holds, hung


class Watchdog:
    """Looks at every watched kernel eight times per the shortest watched timeout; calls a
    kernel's `hung` once its heartbeat has stood still its timeout long while `holds()` says
    it has requests. No kernel watched: no timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._watched: dict[object, _Watched] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._period = math.inf

    def watch(self, key: object, kernel: RingKernel, timeout: float, holds: Callable[[], bool],
              hung: Callable[[str], None]) -> None:
        self._watched[key] = _Watched(HeartbeatWatch(kernel), timeout, holds, hung)
        if timeout / 8 < self._period:  # a look costs tens of microseconds per kernel
            self._period = timeout / 8
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_later(self._period, self._tick)

    def forget(self, key: object) -> None:
        self._watched.pop(key, None)

    def timeout_of(self, key: object) -> float | None:
        entry = self._watched.get(key)
        return entry.timeout if entry is not None else None

    def stalled_for(self, key: object) -> float | None:
        """How long the kernel's heartbeat has stood still; None when it is not watched."""
        entry = self._watched.get(key)
        if entry is None or entry.watch.kernel.closed:
            return None
        return entry.watch.stalled_for()

    def _tick(self) -> None:
        self._timer = None
        for key, entry in list(self._watched.items()):
            if entry.watch.kernel.closed:  # released meanwhile
                self.forget(key)
                continue
            still = entry.watch.stalled_for()
            if still >= entry.timeout and entry.holds():
                self.forget(key)
                entry.hung(f"hung: no heartbeat for {still:.1f} s while it held requests (a "
                           "handler that does not return, or a thread that never reaches a "
                           f"barrier); the watchdog stopped it (watchdog_s={entry.timeout:g})")
        self._period = min((e.timeout / 8 for e in self._watched.values()), default=math.inf)
        if self._watched:
            self._timer = self.loop.call_later(self._period, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()
        self._period = math.inf
