"""SyncRuntime: RingKernelRuntime's methods without `await`, for scripts and notebooks.

The runtime and everything it drives (its channels, timers, host actors, the CPU backend's
wake-ups) live on one event loop on a background thread that this object owns; each method
hands its call to that loop and blocks the caller until it is done (httpx's Client beside
AsyncClient). Because the loop is not the caller's, it works the same where a loop is already
running on the calling thread (a Jupyter cell) and where none is.

    with SyncRuntime(pkg) as runtime:
        runtime.launch("worker")
        resp = runtime.request("worker", pkg.WorkRequest(data=[4.0]), timeout=5.0)
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import numpy as np

from ringgen.errors import KernelStateError
from ringgen.runtime.actors import Actor
from ringgen.runtime.buffers import UnifiedBuffer
from ringgen.runtime.channels import KernelState
from ringgen.runtime.dead_letters import DeadLetter
from ringgen.runtime.events import DEFAULT_CAPACITY, Event, EventStream
from ringgen.runtime.runtime import RingKernelRuntime
from ringgen.runtime.telemetry import Telemetry
from ringgen.schema.package import Package

T = TypeVar("T")


class SyncRuntime:
    """A RingKernelRuntime run on its own loop thread; every method blocks until done.

    Exceptions are the runtime's own (QueueFullError, KernelFaultError, asyncio.TimeoutError
    ...), raised in the caller. Use it as a context manager or call close()."""

    def __init__(self, *packages: ModuleType | Package, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ringgen-runtime",
                                        daemon=True)
        self._thread.start()
        self._closed = False
        self.runtime = RingKernelRuntime(*packages, **options)
        # A SyncRuntime dropped without close() still stops its kernels and its thread.
        self._finalizer = weakref.finalize(self, _close, self._loop, self._thread, self.runtime,
                                           1.0)
        try:
            self._call(self.runtime.__aenter__())
        except BaseException:
            self._closed = True
            self._finalizer.detach()
            _stop(self._loop, self._thread)
            raise

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise KernelStateError("this SyncRuntime is closed; make a new one")
        if threading.current_thread() is self._thread:
            coro.close()
            raise KernelStateError("SyncRuntime methods block: a host actor running on the "
                                   "runtime's loop must use ctx (ActorContext) or "
                                   "`await runtime.runtime.<method>` instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller (a notebook's interrupt) stops the call too
            raise

    def _run(self, fn: Callable[[], T]) -> T:
        """A synchronous runtime method, run on the loop's thread (channels are not shared
        between threads)."""
        async def call() -> T:
            return fn()
        return self._call(call())

    def close(self, timeout: float = 1.0) -> None:
        """Terminate every kernel (as leaving `async with RingKernelRuntime` does) and stop
        the loop thread."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _close(self._loop, self._thread, self.runtime, timeout)

    def __enter__(self) -> SyncRuntime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- kernels ---------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.runtime.backend

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return self._run(lambda: list(self.runtime.dead_letters))

    def launch(self, kernel_id: str, actor: Actor | None = None, activate: bool = True,
               **options: Any) -> None:
        self._call(self.runtime.launch(kernel_id, actor, activate, **options))

    def activate(self, kernel_id: str) -> None:
        self._call(self.runtime.activate(kernel_id))

    def deactivate(self, kernel_id: str) -> None:
        self._call(self.runtime.deactivate(kernel_id))

    def terminate(self, kernel_id: str, timeout: float = 1.0) -> None:
        self._call(self.runtime.terminate(kernel_id, timeout))

    def telemetry(self, kernel_id: str) -> Telemetry:
        return self._run(lambda: self.runtime.telemetry(kernel_id))

    def state(self, kernel_id: str) -> KernelState:
        return self._run(lambda: self.runtime.state(kernel_id))

    def drain(self, kernel_id: str | None = None, timeout: float | None = None) -> None:
        self._call(self.runtime.drain(kernel_id, timeout))

    def events(self, capacity: int = DEFAULT_CAPACITY) -> SyncEvents:
        """runtime.events() as a blocking iterator (it ends once the runtime is closed and
        the events already in it are read); get(timeout) waits at most that long."""
        return SyncEvents(self, self._run(lambda: self.runtime.events(capacity)))

    # -- messages --------------------------------------------------------------------------

    def send(self, kernel_id: str, msg: Any, timeout: float | None = None) -> bool:
        return self._call(self.runtime.send(kernel_id, msg, timeout))

    def send_nowait(self, kernel_id: str, msg: Any) -> bool:
        return self._run(lambda: self.runtime.send_nowait(kernel_id, msg))

    def send_many(self, kernel_id: str, msgs: Sequence[Any], timeout: float | None = None) -> int:
        return self._call(self.runtime.send_many(kernel_id, msgs, timeout))

    def send_array(self, kernel_id: str, arr: np.ndarray, timeout: float | None = None) -> int:
        return self._call(self.runtime.send_array(kernel_id, arr, timeout))

    def receive(self, kernel_id: str, timeout: float | None = None) -> Any:
        return self._call(self.runtime.receive(kernel_id, timeout))

    def receive_many(self, kernel_id: str, max_count: int,
                     timeout: float | None = None) -> list[Any]:
        return self._call(self.runtime.receive_many(kernel_id, max_count, timeout))

    def receive_array(self, kernel_id: str, max_count: int,
                      timeout: float | None = None) -> np.ndarray:
        return self._call(self.runtime.receive_array(kernel_id, max_count, timeout))

    def request(self, kernel_id: str, msg: Any, timeout: float | None = None, *,
                reply_from: str | None = None) -> Any:
        return self._call(self.runtime.request(kernel_id, msg, timeout, reply_from=reply_from))

    # -- routes and state ------------------------------------------------------------------

    def connect(self, src: str, *dsts: str) -> None:
        self._call(self.runtime.connect(src, *dsts))

    def disconnect(self, src: str) -> None:
        self._call(self.runtime.disconnect(src))

    def read_state(self, kernel_id: str, timeout: float = 5.0) -> list[Any]:
        return self._call(self.runtime.read_state(kernel_id, timeout))

    # -- buffers ---------------------------------------------------------------------------

    def unified_buffer(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> UnifiedBuffer:
        return self._run(lambda: self.runtime.unified_buffer(shape, dtype))

    def register(self, buffer: UnifiedBuffer) -> None:
        self._run(lambda: self.runtime.register(buffer))

    def unregister(self, buffer: UnifiedBuffer) -> None:
        self._run(lambda: self.runtime.unregister(buffer))


class SyncEvents:
    """A SyncRuntime's lifecycle events: iterate, or get(timeout)."""

    def __init__(self, owner: SyncRuntime, stream: EventStream) -> None:
        self._owner = owner
        self._stream = stream

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` s (None: for good); None on timeout or
        once the runtime is closed and every event is read."""
        if self._owner._closed:  # the loop is gone; what the stream holds is still here
            return self._stream.get_nowait()
        return self._owner._call(self._stream.get(timeout))

    def __iter__(self) -> SyncEvents:
        return self

    def __next__(self) -> Event:
        event = self.get()
        if event is None:
            raise StopIteration
        return event


def _close(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
           runtime: RingKernelRuntime, timeout: float) -> None:
    try:
        asyncio.run_coroutine_threadsafe(runtime.close(timeout), loop).result()
    finally:
        _stop(loop, thread)


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
