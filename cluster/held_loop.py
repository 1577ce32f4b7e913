"""An event loop on a thread of its own that other threads can hold still between iterations.

A node's host is a threaded Ray actor (cluster/node.py): Ray runs each call on a thread of its
pool, and an async actor would add a hop to its event loop to every call (hundreds of
microseconds on a busy machine, more than a kernel's round trip). The node's runtime still
lives on an event loop, this one. The loop's thread holds `lock` at all times but while it
waits in select(), where no callback or coroutine is half run: a thread that takes the lock
then has the loop's state (channels, replies) to itself, consistent, for a call that neither
awaits nor schedules (a lone request's push and native wait, DeviceChannel.lone_request).
Everything else goes to the loop as a coroutine (run()).
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _ReleasingSelector(selectors.DefaultSelector):
    """Lets go of the loop's lock while it waits for the loop's file descriptors."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._lock = lock

    def select(self, timeout: float | None = None) -> list[Any]:
        self._lock.release()
        try:
            return super().select(timeout)
        finally:
            self._lock.acquire()


class HeldLoop:
    def __init__(self, name: str) -> None:
        self.lock = threading.Lock()
        self.loop = asyncio.SelectorEventLoop(_ReleasingSelector(self.lock))
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self.lock:
            asyncio.set_event_loop(self.loop)
            self.loop.run_forever()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` run on the loop; blocks the calling thread until it is done."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def try_hold(self) -> bool:
        """Takes the lock if the loop waits in select() now (release it after); False if the
        loop is busy: rather than wait for it, the caller goes through run()."""
        return self.lock.acquire(blocking=False)
