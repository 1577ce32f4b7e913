"""NodeHost: the Ray actor that hosts one node's kernels in a RingKernelRuntime of its own.

One per Ray node that runs kernels, pinned to that node. It is a threaded actor, not an async
one: Ray runs each call on a thread of its pool, and most run as a coroutine on the loop of the
node's runtime (cluster/held_loop.py, @on_loop), where they simply await the runtime. A lone
request does not even hop to that loop: its thread holds the loop still and pushes the message
and waits for its reply itself, in native code (ask()). Each method returns an `Outcome`:
the value, or the error as a `Failure` the driver raises again, plus the dead letters the node
made since its last answer. Messages come as their codec's bytes (`serialize()`) with their
class name, batches of structs as numpy arrays; responses go back the same way.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from ringgen.cluster.bridge import Bridge, Target
from ringgen.cluster.held_loop import HeldLoop
from ringgen.cluster.ray_api import ray_module
from ringgen.cluster.wire import Answer, Failure, Letter, Outcome, PackageSpec, pack_reply, unpack_ask
from ringgen.codecs.structs import VECTOR_MIN
from ringgen.errors import KernelStateError, QueueFullError
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason
from ringgen.runtime.device_channel import NOT_LONE, DeviceChannel, Pending
from ringgen.runtime.runtime import RingKernelRuntime
from ringgen.schema.package import Package

P = ParamSpec("P")
T = TypeVar("T")


def on_loop(method: Callable[Concatenate[NodeHost, P], Coroutine[Any, Any, T]]
            ) -> Callable[Concatenate[NodeHost, P], T]:
    """A method written as a coroutine of the runtime's loop, called by Ray on a thread of
    its pool, which waits for it."""
    @functools.wraps(method)
    def call(self: NodeHost, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._held.run(method(self, *args, **kwargs))
    return call


# The calls of a NodeHost that can wait (for a reply, for room, for responses), holding the
# thread Ray runs them on meanwhile: the driver keeps threads for the others (cluster/hosts.py).
WAITING_CALLS = frozenset({"ask", "await_reply", "send", "send_structs", "send_many",
                           "send_array", "receive_many", "receive_array"})


class NodeHost:
    """Made with `ray.remote(NodeHost)` by the driver (ray is imported only there)."""

    def __init__(self, specs: list[PackageSpec], options: dict[str, Any]) -> None:
        self._held = HeldLoop("ringgen-node")
        self._specs = specs
        self._options = options
        self._letters: list[Letter] = []
        self._bridges: dict[str, Bridge] = {}
        self._ending: dict[str, Bridge] = {}  # disconnected (maybe still delivering its last batch)
        self._runtime: RingKernelRuntime | None = None
        self._packages: list[Package] = []
        self._classes: dict[str, type] = {}
        self._awaited: dict[bytes, asyncio.Future[Any]] = {}  # expect() -> await_reply()
        self._turns: dict[str, Turns] = {}  # send_nowait()'s order, per stream of the driver

    # -- lifecycle -------------------------------------------------------------------------

    @on_loop
    async def start(self) -> Outcome:
        """Import the packages and enter the runtime on this actor's loop; the value is
        (this process's id, the backend it resolved, the Ray node it runs on)."""
        async def go() -> tuple[int, str, str]:
            self._packages = [spec.load() for spec in self._specs]
            self._classes = {name: cls for p in self._packages for name, cls in p.classes.items()}
            runtime = RingKernelRuntime(*self._packages, dead_letter_hook=self._letter,
                                        **self._options)
            await runtime.__aenter__()
            self._runtime = runtime
            return os.getpid(), runtime.backend, ray_module().get_runtime_context().get_node_id()
        return await self._answer(go())

    def alive(self) -> None:
        """Never returns: the driver awaits it, and learns of the actor's death when it fails.
        It holds one of the threads Ray runs the actor's calls on."""
        threading.Event().wait()

    @on_loop
    async def shutdown(self, timeout: float) -> Outcome:
        async def go() -> None:
            bridges = [*self._bridges.values(), *self._ending.values()]
            for bridge in bridges:
                bridge.stop()
            self._bridges.clear()
            self._ending.clear()
            # The targets end first: a batch a paused, full target kept waiting becomes its
            # dead letters then, and the bridge ends.
            await self.runtime.close(timeout)
            for bridge in bridges:
                await bridge.ended()
        return await self._answer(go())

    @on_loop
    async def runner_pids(self) -> list[int]:
        """The CPU backend's runner processes (what a clean shutdown must leave none of)."""
        runtime = self.runtime
        pids = []
        for kernel_id in runtime.kernel_ids():
            channel = runtime.channel(kernel_id)
            if isinstance(channel, DeviceChannel):
                proc = getattr(channel.kernel, "proc", None)  # a GPU kernel has no process
                if proc is not None:
                    pids.append(int(proc.pid))
        return pids

    # -- kernels ---------------------------------------------------------------------------

    @on_loop
    async def launch(self, kernel_id: str, activate: bool, options: dict[str, Any]) -> Outcome:
        return await self._answer(self.runtime.launch(kernel_id, activate=activate, **options))

    @on_loop
    async def lifecycle(self, what: str, kernel_id: str, *args: Any) -> Outcome:
        """activate, deactivate, terminate, drain, telemetry, state or read_state."""
        runtime = self.runtime
        if what == "telemetry":
            return await self._answer(_ready(runtime.telemetry(kernel_id)))
        if what == "state":
            return await self._answer(_ready(runtime.state(kernel_id).value))
        if what not in ("activate", "deactivate", "terminate", "drain", "read_state"):
            raise ValueError(f"no lifecycle call {what!r}")
        call: Callable[..., Awaitable[Any]] = getattr(runtime, what)
        return await self._answer(call(kernel_id, *args))

    @on_loop
    async def connect(self, src: str, dsts: list[str]) -> Outcome:
        return await self._answer(self.runtime.connect(src, *dsts))

    @on_loop
    async def bridge(self, src: str, targets: list[Target]) -> Outcome:
        """Forward src's output to `targets` (kernels here, or on other nodes), batched."""
        async def go() -> None:
            if src in self._bridges:
                raise KernelStateError(f"{src!r} is already connected; disconnect it first")
            self.runtime.channel(src).check_open()
            self._bridges[src] = Bridge(self.runtime, src, targets, self._add_letters,
                                        after=self._ending.pop(src, None))
        return await self._answer(go())

    @on_loop
    async def disconnect(self, src: str) -> Outcome:
        async def go() -> None:
            bridge = self._bridges.pop(src, None)
            if bridge is not None:
                bridge.stop()
                self._ending[src] = bridge  # a later bridge of src delivers after its last batch
            else:
                await self.runtime.disconnect(src)
        return await self._answer(go())

    # -- messages --------------------------------------------------------------------------

    @on_loop
    async def send(self, kernel_id: str, class_name: str, data: bytes,
                   timeout: float | None) -> Outcome:
        return await self._answer(self.runtime.send(kernel_id, self._decode(class_name, data),
                                                    timeout))

    @on_loop
    async def send_nowait(self, kernel_id: str, stream: str, seq: int, class_name: str,
                          data: bytes) -> Outcome:
        """The driver's send_nowait(): enqueued now or not at all, in the order the driver
        numbered its calls of `stream` (Ray may start an async actor's calls out of order).
        Where one machine raises QueueFullError (send() would wait for room), the message is
        a dead letter here: its sender moved on."""
        turns = self._turns.setdefault(stream, Turns())
        await turns.wait(seq)
        try:
            msg = self._decode(class_name, data)
            try:
                accepted = self.runtime.send_nowait(kernel_id, msg)
            except QueueFullError as e:
                self.runtime.add_dead_letter(DeadLetter(
                    kernel_id, msg, DeadLetterReason.DROPPED_NEWEST,
                    f"send_nowait() from another node found the queue full: {e}"))
                accepted = False
        except Exception as e:
            return await self._answer(_failed(e))
        finally:
            turns.done(seq)
        return await self._answer(_ready(accepted))

    @on_loop
    async def send_many(self, kernel_id: str, class_name: str, blobs: list[bytes],
                        timeout: float | None) -> Outcome:
        cls = self._class(class_name)
        return await self._answer(self.runtime.send_many(
            kernel_id, [cls.deserialize(b) for b in blobs], timeout))

    @on_loop
    async def send_structs(self, kernel_id: str, rows: np.ndarray,
                           timeout: float | None) -> Outcome:
        """send_many() of a device kernel's messages that the driver packed as its C structs.
        The same choice as DeviceChannel.send_many: a batch that fits the queue goes in as an
        array; a small one, or one that does not fit, is admitted message by message under
        the backpressure rules (so drops and their dead letters are those of one machine)."""
        async def go() -> int:
            channel = self.runtime.channel(kernel_id)
            if not isinstance(channel, DeviceChannel):
                raise KernelStateError(f"{kernel_id!r} is a host actor; send it message objects")
            if len(rows) >= VECTOR_MIN and len(channel.backlog) + len(rows) <= channel.queue_size:
                return await self.runtime.send_array(kernel_id, rows, timeout)
            return await self.runtime.send_many(kernel_id, channel.in_codec.unpack_many(rows),
                                                timeout)
        return await self._answer(go())

    @on_loop
    async def send_array(self, kernel_id: str, rows: np.ndarray, timeout: float | None) -> Outcome:
        return await self._answer(self.runtime.send_array(kernel_id, rows, timeout))

    def ask(self, packed: bytes) -> Answer:
        """A request (wire.pack_ask), answered as pack_reply's bytes where that says it all.

        A lone request to a device kernel is answered on this thread, with the loop held
        still (DeviceChannel.lone_request: a push, then a native wait for the reply); when the
        loop is busy, or the request is not lone, or no reply came within the spin, the
        request goes on on the loop, as RingKernelRuntime.request."""
        outcome = self._request(*unpack_ask(packed))
        value, failure, letters = outcome
        if failure is None and not letters:
            return pack_reply(*value)
        return outcome

    def _request(self, kernel_id: str, class_name: str, data: bytes, timeout: float | None,
                 reply_from: str | None) -> Outcome:
        if reply_from in (None, kernel_id) and self._held.try_hold():
            try:
                got = self._lone_request(kernel_id, class_name, data, timeout)
            finally:
                self._held.lock.release()
            if isinstance(got, Pending):
                return self._held.run(self._answer(_response(
                    self.runtime.channel(kernel_id).await_reply(got.key, got.future, timeout,
                                                                polled=True))))
            if got is not NOT_LONE:
                return got
        async def go() -> Any:
            return await self.runtime.request(kernel_id, self._decode(class_name, data),
                                              timeout, reply_from=reply_from)
        return self._held.run(self._answer(_response(go())))

    def _lone_request(self, kernel_id: str, class_name: str, data: bytes,
                      timeout: float | None) -> Any:
        """With the loop held: the request's Outcome, or NOT_LONE, or the Pending reply."""
        try:
            channel = self.runtime.channel(kernel_id)
        except KernelStateError:
            return NOT_LONE  # the loop's request() says what is wrong
        if not isinstance(channel, DeviceChannel):
            return NOT_LONE  # a host actor
        try:
            got = channel.lone_request(self._decode(class_name, data), timeout)
        except Exception as e:
            return self._outcome(None, Failure.of(e))
        if got is NOT_LONE or isinstance(got, Pending):
            return got
        return self._outcome((type(got).__name__, got.serialize()), None)

    @on_loop
    async def expect(self, kernel_id: str, key: bytes) -> Outcome:
        """The first half of a request whose pipeline ends on this node: wait for the reply
        correlated to `key` from now on (await_reply collects it)."""
        async def go() -> None:
            channel = self.runtime.channel(kernel_id)
            if not channel.answers:
                raise KernelStateError(f"kernel {kernel_id!r} sends no responses; it cannot be "
                                       "reply_from")
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            channel.replies.expect(int.from_bytes(key, "big"), future)
            self._awaited[key] = future
        return await self._answer(go())

    @on_loop
    async def await_reply(self, kernel_id: str, key: bytes, timeout: float | None) -> Outcome:
        async def go() -> tuple[str, bytes]:
            channel = self.runtime.channel(kernel_id)
            future = self._awaited[key]
            gave_up = True  # timed out or abandoned: a late reply becomes a dead letter
            try:
                channel.want_responses()
                response = await channel.deadlines.wait(future, timeout)
                gave_up = False
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(
                    f"no reply from kernel {kernel_id!r} within {timeout} s; a late reply will "
                    "go to the dead letters") from None
            finally:
                del self._awaited[key]
                channel.replies.settle(int.from_bytes(key, "big"), gave_up)
            return type(response).__name__, response.serialize()
        return await self._answer(go())

    @on_loop
    async def unexpect(self, kernel_id: str, key: bytes) -> Outcome:
        """expect() undone: its caller gave up before await_reply; a reply is a dead letter."""
        async def go() -> None:
            if self._awaited.pop(key, None) is not None:
                self.runtime.channel(kernel_id).replies.settle(int.from_bytes(key, "big"), True)
        return await self._answer(go())

    @on_loop
    async def forget_reply(self, key: bytes) -> Outcome:
        """The driver gave up on a request before its reply came: await_reply ends now."""
        async def go() -> None:
            future = self._awaited.get(key)
            if future is not None and not future.done():
                future.set_exception(KernelStateError("the request was abandoned by its caller"))
        return await self._answer(go())

    @on_loop
    async def receive_many(self, kernel_id: str, max_count: int,
                           timeout: float | None) -> Outcome:
        async def go() -> list[tuple[str, bytes]]:
            got = await self.runtime.receive_many(kernel_id, max_count, timeout)
            return [(type(m).__name__, m.serialize()) for m in got]
        return await self._answer(go())

    @on_loop
    async def receive_array(self, kernel_id: str, max_count: int,
                            timeout: float | None) -> Outcome:
        return await self._answer(self.runtime.receive_array(kernel_id, max_count, timeout))

    @on_loop
    async def letters(self) -> Outcome:
        """Only the dead letters made since the last answer."""
        return await self._answer(_ready(None))

    # -- helpers ---------------------------------------------------------------------------

    @property
    def runtime(self) -> RingKernelRuntime:
        if self._runtime is None:
            raise KernelStateError("the node's runtime has not started (start() first)")
        return self._runtime

    def _class(self, name: str) -> Any:
        try:
            return self._classes[name]
        except KeyError:
            raise TypeError(f"no message class {name!r} in the packages of this node; send "
                            "messages of the runtime's packages") from None

    def _decode(self, class_name: str, data: bytes) -> Any:
        return self._class(class_name).deserialize(data)

    def _letter(self, letter: DeadLetter) -> None:
        self._letters.append(Letter.of(letter))

    def _add_letters(self, letters: list[Letter]) -> None:
        """Dead letters another node made for a bridge of this one: sent on with ours."""
        self._letters.extend(letters)

    def _answer(self, work: Awaitable[Any]) -> Coroutine[Any, Any, Outcome]:
        """`work`'s Outcome, awaited on the loop. (A plain method that returns a coroutine:
        an `async def` would make Ray take NodeHost for an async actor.)"""
        return _answered(self, work)

    def _outcome(self, value: Any, failure: Failure | None) -> Outcome:
        """On the loop, or with it held: with the dead letters made since the last answer."""
        letters, self._letters = self._letters, []
        return value, failure, letters


async def _answered(host: NodeHost, work: Awaitable[Any]) -> Outcome:
    try:
        value, failure = await work, None
    except Exception as e:  # every error goes back to the driver, raised there again
        value, failure = None, Failure.of(e)
    return host._outcome(value, failure)


async def _response(work: Awaitable[Any]) -> tuple[str, bytes]:
    """A response as it crosses: its class name and its bytes."""
    response = await work
    return type(response).__name__, response.serialize()


async def _ready(value: Any) -> Any:
    return value


async def _failed(error: Exception) -> Any:
    raise error


class Turns:
    """Calls numbered 0, 1, 2, ... by their sender go on in that order, whatever order they
    arrive in: each waits for the one before it to be done."""

    def __init__(self) -> None:
        self.next = 0
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def wait(self, seq: int) -> None:
        if seq != self.next:
            future = self._waiting[seq] = asyncio.get_running_loop().create_future()
            await future

    def done(self, seq: int) -> None:
        self.next = seq + 1
        future = self._waiting.pop(self.next, None)
        if future is not None:
            future.set_result(None)
