"""ClusterRuntime: RingKernelRuntime's API over the nodes of a Ray cluster.

    async with ClusterRuntime(pkg, address="auto") as rt:      # None: a local Ray
        a, b = (await rt.nodes())[:2]
        await rt.launch("stage1", node=a)
        await rt.launch("stage2", node=b, device=1)
        await rt.connect("stage1", "stage2")                      # bridged by the hosts
        resp = await rt.request("stage1", msg, reply_from="stage2")

Each node that runs kernels gets one Ray actor (cluster/node.py) pinned to it, which hosts a
RingKernelRuntime with that node's backend; every call routes by kernel id to its node. The
rules of one runtime hold across nodes because they are the node runtime's own: priorities,
correlation, backpressure, dead letters. The driver adds what only it can know: which messages
a node holds (cluster/ledger.py), so that a node's death turns them into dead letters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ringgen.cluster.hosts import SHUT_DOWN, Host, Hosts
from ringgen.cluster.ledger import Ledger
from ringgen.cluster.ray_api import ray_module
from ringgen.cluster.wire import Letter, pack_ask, unpack_reply
from ringgen.codecs.structs import StructCodec
from ringgen.errors import KernelFaultError, KernelStateError, QueueFullError
from ringgen.runtime.channels import KernelState
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason, DeadLetterStore
from ringgen.runtime.runtime import Default, dtype_in
from ringgen.runtime.telemetry import Telemetry
from ringgen.schema.package import KernelDef, Package, package_of

log = logging.getLogger("ringgen.cluster")

@dataclasses.dataclass
class _Placed:
    kernel_id: str
    node: Host
    device: int
    kdef: KernelDef
    ledger: Ledger
    # A device kernel's batches of objects cross as its C structs (the struct codec, packed
    # and unpacked column-wise here), as RingKernelRuntime's own send_many/receive_many do.
    in_codec: StructCodec | None = None
    out_codec: StructCodec | None = None
    # send_nowait()'s calls, numbered so that the node takes them in order: a stream per
    # placement (a kernel launched again starts a new one, at 0).
    stream: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    sent_nowait: int = 0
    # (node method, what it returned) for receives cancelled while the node took responses
    kept: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    keeping: set[asyncio.Future[None]] = dataclasses.field(default_factory=set)  # to come

    @staticmethod
    def of(kernel_id: str, node: Host, device: int, kdef: KernelDef) -> _Placed:
        device_kernel = not kdef.host_actor  # a host actor takes and gives objects
        return _Placed(kernel_id, node, device, kdef, Ledger(kernel_id),
                       StructCodec(kdef.input, kdef.in_dtype)
                       if kdef.in_dtype is not None and device_kernel else None,
                       StructCodec(kdef.output, kdef.out_dtype)
                       if kdef.out_dtype is not None and device_kernel else None)


class ClusterRuntime(DeadLetterStore):
    """An async context manager that places kernels on Ray nodes and owns them."""

    def __init__(self, *packages: ModuleType | Package, address: str | None = None,
                 backend: str = "auto",
                 dead_letter_hook: Callable[[DeadLetter], None] | None = None,
                 ray_options: dict[str, Any] | None = None, **runtime_options: Any) -> None:
        """`address`: None starts (or joins, with RAY_ADDRESS) a local Ray; "auto" joins the
        running cluster; "ray://host:port" is Ray Client. A Ray already initialized in this
        process is used as it is and left running. `backend` and `runtime_options`
        (lane_capacity, hang_timeout, ...) go to each node's RingKernelRuntime; `ray_options`
        to ray.init."""
        self.packages = [package_of(p) for p in packages]
        self.address = address
        DeadLetterStore.__init__(self, dead_letter_hook)  # dead_letters, add_dead_letter()
        self._options = {"backend": backend, **runtime_options}
        self._ray_options = ray_options or {}
        self._ray: Any = None
        self._owns_ray = False
        self._hosts: Hosts | None = None  # made on entering
        self._placed: dict[str, _Placed] = {}
        self._edges: dict[str, list[str]] = {}  # connect(): src -> dsts
        self._verdicts: set[asyncio.Future[None]] = set()  # send_nowait()s not yet answered
        self._late: set[asyncio.Future[None]] = set()  # cancelled request()s' replies to come

    # -- context ---------------------------------------------------------------------------

    async def __aenter__(self) -> ClusterRuntime:
        ray = ray_module()
        if not ray.is_initialized():
            # On this thread, not an executor's: Ray sets its signal handlers on the main thread.
            ray.init(address=self.address, **{"include_dashboard": False, "log_to_driver": False,
                                              **self._ray_options})
            self._owns_ray = True
        self._ray = ray
        self._hosts = Hosts(ray, self.packages, self._options, self._letters, self._node_died)
        self._placed.clear()  # a runtime entered again starts afresh
        self._edges.clear()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 1.0) -> None:
        """shutdown(timeout), then Ray itself if this runtime started it."""
        try:
            await self.shutdown(timeout)
        finally:
            if self._owns_ray and self._ray is not None:
                self._ray.shutdown()
                self._owns_ray = False

    async def shutdown(self, timeout: float = 1.0) -> None:
        """Terminate every kernel on every node (each node's runtime shutdown), then end the
        node hosts; their runner processes end with them."""
        await self._verdicts_in()  # what send_nowait() handed on is enqueued before the end
        await self.hosts.shutdown(timeout)
        if self._late:  # each ends with its node's answer, or with the node's end
            _, left = await asyncio.wait(self._late, timeout=timeout)
            for task in left:
                task.cancel()

    @property
    def closing(self) -> bool:
        """shutdown() began: nothing is launched any more."""
        return self._hosts is not None and self._hosts.closing

    def dtype_of(self, cls: type) -> np.dtype | None:
        """The C struct (numpy dtype) of a message class of the packages, if it has one."""
        return dtype_in(self.packages, cls)

    @property
    def hosts(self) -> Hosts:
        if self._hosts is None:
            raise KernelStateError("use the runtime inside `async with ClusterRuntime(...)`")
        return self._hosts

    # -- nodes -----------------------------------------------------------------------------

    async def nodes(self) -> list[str]:
        """The ids of the Ray nodes that are alive (the driver's first): where kernels can go."""
        return await self.hosts.nodes()

    def placement(self, kernel_id: str) -> tuple[str, int]:
        """(node id, device) of a launched kernel."""
        placed = self._placed_kernel(kernel_id)
        return placed.node.node_id, placed.device

    async def processes(self) -> dict[str, tuple[int, list[int]]]:
        """Per live node: its host actor's process id and its kernels' runner processes (CPU
        backend) -- what to look for after a shutdown."""
        return await self.hosts.processes()

    def _node_died(self, host: Host) -> None:
        """Its kernels are FAILED; what the driver knows it held becomes dead letters."""
        for placed in self._placed.values():
            if placed.node is host:
                detail = (f"node {host.node_id} died with kernel {placed.kernel_id!r} "
                          f"({host.dead}) before it was processed")
                for letter in placed.ledger.fail(detail):
                    self.add_dead_letter(letter)

    def _letters(self, letters: list[Letter]) -> None:
        for letter in letters:
            self.add_dead_letter(letter.decode(self.packages))

    # -- kernels ---------------------------------------------------------------------------

    async def launch(self, kernel_id: str, actor: Any = None, activate: bool = True, *,
                     node: str | None = None, device: int = 0, queue_size: int | None = None,
                     backpressure: str | None = None, lane_capacity: int | None = None,
                     restart: str = "never", max_restarts: int = 3, within_s: float = 60.0,
                     backoff_s: float = 0.5, redeliver: bool = False,
                     watchdog_s: float | Default | None = Default.HANG_TIMEOUT) -> None:
        """Start a kernel of the packages on `node` (default: the driver's) and `device`; the
        other options are RingKernelRuntime.launch's, applied by the node's runtime (which
        supervises a restart="on_failure" kernel where it runs). Host actors are the
        packages' own (`async def` under @ring_kernel): a function passed as `actor` would
        have to be shipped to the node, which this runtime does not do."""
        if self.hosts.closing:
            raise KernelStateError(f"cannot launch {kernel_id!r}: the runtime is shut down")
        if actor is not None:
            raise KernelStateError(f"launch({kernel_id!r}, actor=...) is for one machine; on a "
                                   "cluster declare the host actor with @ring_kernel in the "
                                   "package, so that every node imports it")
        kdef = self._kernel(kernel_id)
        old = self._placed.get(kernel_id)
        if old is not None and old.node.dead is None and await self.state(kernel_id) not in (
                KernelState.TERMINATED, KernelState.FAILED):
            raise KernelStateError(f"kernel {kernel_id!r} is already running on node "
                                   f"{old.node.node_id}; terminate it first")
        host = await self.hosts.get(node or (await self.nodes())[0])
        options: dict[str, Any] = {
            "queue_size": queue_size, "backpressure": backpressure, "lane_capacity": lane_capacity,
            "device": device, "restart": restart, "max_restarts": max_restarts,
            "within_s": within_s, "backoff_s": backoff_s, "redeliver": redeliver}
        if watchdog_s is not Default.HANG_TIMEOUT:  # left out: the node runtime's hang_timeout
            options["watchdog_s"] = watchdog_s
        await self.hosts.call(host, "launch", kernel_id, activate, options, kernel_id=kernel_id)
        self._placed[kernel_id] = _Placed.of(kernel_id, host, device, kdef)

    async def activate(self, kernel_id: str) -> None:
        await self._lifecycle("activate", kernel_id)

    async def deactivate(self, kernel_id: str) -> None:
        await self._lifecycle("deactivate", kernel_id)

    async def terminate(self, kernel_id: str, timeout: float = 1.0) -> None:
        await self._lifecycle("terminate", kernel_id, timeout)

    async def connect(self, src: str, *dsts: str) -> None:
        """src's output goes to each dst: through routes where all are on src's node (CPU
        backend), else bridged by the hosts in batches (cluster/bridge.py). Types must match;
        no cycles."""
        source = self._placed_kernel(src)
        if not dsts:
            raise KernelStateError(f"connect({src!r}) names no target; give one or more kernels")
        targets = [self._placed_kernel(d) for d in dsts]
        for t in targets:
            if source.kdef.output is None or t.kdef.input is not source.kdef.output:
                out = getattr(source.kdef.output, "__name__", "nothing")
                raise KernelStateError(
                    f"cannot connect {src!r} to {t.kernel_id!r}: {src!r} sends {out} and "
                    f"{t.kernel_id!r} takes {getattr(t.kdef.input, '__name__', None)}")
        self._refuse_cycle(src, list(dsts))
        # Routes (shared memory between runners) exist on the CPU backend; on CUDA, between
        # GPUs or on one until device routes are built, the node's host bridges instead.
        if all(t.node is source.node for t in targets) and source.node.backend == "cpu":
            await self.hosts.call(source.node, "connect", src, list(dsts), kernel_id=src)
        else:
            wire = [(t.kernel_id, None if t.node is source.node else t.node.handle)
                    for t in targets]
            await self.hosts.call(source.node, "bridge", src, wire, kernel_id=src)
        self._edges[src] = list(dsts)

    async def disconnect(self, src: str) -> None:
        await self.hosts.call(self._placed_kernel(src).node, "disconnect", src, kernel_id=src)
        self._edges.pop(src, None)

    def _refuse_cycle(self, src: str, dsts: list[str]) -> None:
        edges = {**self._edges, src: dsts}
        path: list[str] = []

        def visit(k: str) -> None:
            if k in path:
                cycle = " -> ".join([*path[path.index(k):], k])
                raise KernelStateError(f"connecting {src!r} would make a cycle ({cycle}), "
                                       "which could block forever; break it with a host actor")
            path.append(k)
            for d in edges.get(k, []):
                visit(d)
            path.pop()

        visit(src)

    # -- messages --------------------------------------------------------------------------

    async def send(self, kernel_id: str, msg: Any, timeout: float | None = None) -> bool:
        """Enqueue `msg` on its kernel's node; False if backpressure dropped it (a dead letter)."""
        placed = self._sendable(kernel_id)
        placed.ledger.add_messages([msg])
        try:
            return bool(await self.hosts.call(placed.node, "send", kernel_id, type(msg).__name__,
                                         msg.serialize(), timeout, kernel_id=kernel_id))
        except Exception as e:
            self._refused(placed, [msg], e)
            raise

    def send_nowait(self, kernel_id: str, msg: Any) -> bool:
        """send() without waiting: `msg` is handed to its node now, and enqueued there after
        the send_nowait()s to the kernel before it (in order). True: handed on. The node's
        verdict comes later, as a dead letter: dropped by backpressure as on one machine, or,
        where one machine raises QueueFullError (room to wait for), DROPPED_NEWEST; a kernel
        that failed or ended meanwhile makes it KERNEL_FAILED or TERMINATED."""
        placed = self._sendable(kernel_id)
        if placed.kdef.input is not None and type(msg) is not placed.kdef.input:
            raise TypeError(f"kernel {kernel_id!r} takes {placed.kdef.input.__name__} messages, "
                            f"not {type(msg).__name__}; nothing was enqueued")
        ref = self.hosts.submit(placed.node, "send_nowait", kernel_id, placed.stream,
                                placed.sent_nowait, type(msg).__name__, msg.serialize(),
                                kernel_id=kernel_id)
        placed.sent_nowait += 1
        placed.ledger.add_messages([msg])
        verdict = asyncio.ensure_future(self._verdict(placed, msg, ref))
        self._verdicts.add(verdict)
        verdict.add_done_callback(self._verdicts.discard)
        return True

    async def _verdicts_in(self) -> None:
        """Every send_nowait() so far has been answered by its node (and its dead letter, if
        any, is in `dead_letters`)."""
        if self._verdicts:
            await asyncio.gather(*list(self._verdicts), return_exceptions=True)

    async def _verdict(self, placed: _Placed, msg: Any, ref: Any) -> None:
        """What the node made of a send_nowait(): a refusal is a dead letter (a drop is one
        already, made by the node)."""
        try:
            await self.hosts.outcome(placed.node, ref, placed.kernel_id)
        except Exception as e:
            if isinstance(e, KernelFaultError) and placed.node.dead is not None:
                return  # the node died: the ledger made it a dead letter
            reason = (DeadLetterReason.TERMINATED if isinstance(e, KernelStateError)
                      else DeadLetterReason.KERNEL_FAILED)
            self.add_dead_letter(DeadLetter(placed.kernel_id, msg, reason,
                                            f"send_nowait() was refused on the node: {e}"))

    async def send_many(self, kernel_id: str, msgs: Sequence[Any],
                        timeout: float | None = None) -> int:
        """Enqueue a batch (one class of message) in one call; what RingKernelRuntime's does."""
        if not msgs:
            return 0
        placed = self._sendable(kernel_id)
        cls = type(msgs[0])
        if any(type(m) is not cls for m in msgs):
            raise TypeError(f"send_many to {kernel_id!r} across nodes takes messages of one "
                            "class per call; send each class in its own batch")
        placed.ledger.add_messages(msgs)
        try:
            if placed.in_codec is not None and cls is placed.kdef.input:
                return int(await self.hosts.call(placed.node, "send_structs", kernel_id,
                                            placed.in_codec.pack_many(msgs), timeout,
                                            kernel_id=kernel_id))
            return int(await self.hosts.call(placed.node, "send_many", kernel_id, cls.__name__,
                                        [m.serialize() for m in msgs], timeout,
                                        kernel_id=kernel_id))
        except Exception as e:
            self._refused(placed, msgs, e)
            raise

    async def send_array(self, kernel_id: str, arr: np.ndarray, timeout: float | None = None) -> int:
        """send_many() of a struct array of the input dtype; Ray moves a large one through its
        object store. A QueueFullError's `accepted` holds indices into `arr`."""
        placed = self._sendable(kernel_id)
        if not isinstance(arr, np.ndarray) or arr.dtype.names is None or \
                "message_id" not in arr.dtype.names:
            raise TypeError(f"send_array to {kernel_id!r} takes a numpy struct array of its "
                            "input (pkg.new_array makes one)")
        placed.ledger.add_rows(arr)
        try:
            return int(await self.hosts.call(placed.node, "send_array", kernel_id, arr, timeout,
                                        kernel_id=kernel_id))
        except Exception as e:
            accepted = getattr(e, "accepted", None)
            refused = np.setdiff1d(np.arange(len(arr)), accepted if accepted is not None
                                   else np.empty(0, dtype=np.intp))
            if not (isinstance(e, KernelFaultError) and placed.node.dead is not None):
                placed.ledger.forget_rows(arr[refused], "message_id")
            raise

    def _refused(self, placed: _Placed, msgs: Sequence[Any], error: Exception) -> None:
        """A call that raised accepted none of `msgs` (QueueFullError: all but `accepted`),
        unless the node died under it: then they are its dead letters already."""
        if isinstance(error, KernelFaultError) and placed.node.dead is not None:
            return
        taken = error.accepted if isinstance(error, QueueFullError) else None
        accepted = set() if taken is None else {int(i) for i in taken}
        placed.ledger.forget(m.message_id.bytes for i, m in enumerate(msgs) if i not in accepted)

    async def request(self, kernel_id: str, msg: Any, timeout: float | None = None, *,
                      reply_from: str | None = None) -> Any:
        """Send `msg` and await the response correlated to it: from the kernel, or from
        `reply_from`, the end of a pipeline it starts (on this node or another)."""
        placed = self._sendable(kernel_id)
        last = self._sendable(reply_from) if reply_from is not None else placed
        if last.node is not placed.node:
            return await self._request_across(placed, last, msg, timeout)
        asked = await self.hosts.started(placed.node, "ask", pack_ask(
            kernel_id, type(msg).__name__, msg.serialize(), timeout, reply_from),
            kernel_id=kernel_id)
        placed.ledger.add_messages([msg])  # no loop turn since it was handed to Ray
        try:
            got = await asyncio.shield(asked)
        except asyncio.TimeoutError:
            raise  # the late reply will settle it (a dead letter on the node)
        except asyncio.CancelledError:
            # The node answers it all the same (a Ray call runs to its end): as on one
            # machine, that answer is a late reply, a dead letter.
            self._late_reply(placed, last, msg, asked)
            raise
        except Exception as e:
            self._refused(placed, [msg], e)
            raise
        return self._answered(placed, last, msg, got)

    def _answered(self, first: _Placed, last: _Placed, msg: Any,
                  got: bytes | tuple[str, bytes]) -> Any:
        """The reply to a request (NodeHost.ask's bytes, or a class name and bytes): `msg` was
        processed (its first kernel's ledger lets it go, a node's death later is no dead
        letter of it), and the reply is last's."""
        response = self._decode(*(unpack_reply(got) if isinstance(got, bytes) else got))
        first.ledger.forget([msg.message_id.bytes])
        last.ledger.answered_by([response])
        return response

    def _late_reply(self, first: _Placed, last: _Placed, msg: Any,
                    asked: asyncio.Future[Any]) -> None:
        async def settle() -> None:
            try:
                got = await asked
            except Exception:
                return  # refused, timed out or the node died: each is accounted where it happened
            response = self._answered(first, last, msg, got)
            self.add_dead_letter(DeadLetter(
                last.kernel_id, response, DeadLetterReason.LATE_REPLY,
                "the response came after its request() was cancelled by its caller"))
        task = asyncio.ensure_future(settle())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _request_across(self, first: _Placed, last: _Placed, msg: Any,
                              timeout: float | None) -> Any:
        """The reply is awaited on last's node, registered there before msg is sent."""
        key = msg.message_id.bytes
        expected = await self.hosts.started(last.node, "expect", last.kernel_id, key,
                                            kernel_id=last.kernel_id)
        try:
            await asyncio.shield(expected)
        except asyncio.CancelledError:  # expect() runs on the node all the same: undo it there
            await asyncio.shield(self._unexpect(last, key, expected))
            raise
        waiting = asyncio.ensure_future(self.hosts.call(
            last.node, "await_reply", last.kernel_id, key, timeout, kernel_id=last.kernel_id))
        try:
            if not await self.send(first.kernel_id, msg, timeout):
                raise QueueFullError(f"kernel {first.kernel_id!r}: the request was dropped by "
                                     "backpressure")
            got = await waiting
        except BaseException:
            if not waiting.done():  # the node stops waiting too (a late reply: a dead letter)
                await asyncio.shield(self._forget_reply(last, key))
            raise
        return self._answered(first, last, msg, got)

    async def _unexpect(self, last: _Placed, key: bytes, expected: asyncio.Future[Any]) -> None:
        """A request cancelled while its expect() was on its way: once that ran, the node
        forgets it (else its kernel's requests would keep an awaited reply nobody collects)."""
        try:
            await expected
            await self.hosts.call(last.node, "unexpect", last.kernel_id, key,
                                  kernel_id=last.kernel_id)
        except Exception:
            pass  # refused there (nothing registered), or the node is gone with what it held

    async def _forget_reply(self, last: _Placed, key: bytes) -> None:
        try:
            await self.hosts.call(last.node, "forget_reply", key, kernel_id=last.kernel_id)
        except KernelFaultError:
            pass  # the node is gone, and its waiting with it

    async def receive(self, kernel_id: str, timeout: float | None = None) -> Any:
        got = await self.receive_many(kernel_id, 1, timeout)
        if not got:
            raise asyncio.TimeoutError(f"no response from kernel {kernel_id!r} within {timeout} s")
        return got[0]

    async def receive_many(self, kernel_id: str, max_count: int,
                           timeout: float | None = None) -> list[Any]:
        placed = self._placed_kernel(kernel_id)
        if placed.out_codec is not None:
            rows = await self._take(placed, "receive_array", max_count, timeout)
            responses = placed.out_codec.unpack_many(rows)
        else:
            got = await self._take(placed, "receive_many", max_count, timeout)
            responses = [self._decode(name, data) for name, data in got]
        placed.ledger.answered_by(responses)
        return responses

    async def receive_array(self, kernel_id: str, max_count: int,
                            timeout: float | None = None) -> np.ndarray:
        placed = self._placed_kernel(kernel_id)
        rows: np.ndarray = await self._take(placed, "receive_array", max_count, timeout)
        placed.ledger.forget_rows(rows, "correlation_id")
        return rows

    async def _take(self, placed: _Placed, method: str, max_count: int,
                    timeout: float | None) -> Any:
        """What the node's receive_array or receive_many takes for this caller. A caller
        cancelled meanwhile (asyncio.wait_for, a cancelled task) loses nothing: the node
        still answers, and what it took is kept for the next receive of the kernel, which
        waits for that answer first (up to its timeout)."""
        if placed.keeping:
            await asyncio.wait(set(placed.keeping), timeout=timeout)
            if placed.keeping and not placed.kept:  # still waiting on the node: a timeout
                return [] if method == "receive_many" else \
                    np.empty(0, dtype=placed.kdef.out_dtype)
        if placed.kept and placed.kept[0][0] == method:
            _, got = placed.kept.pop(0)
            if len(got) > max_count:
                placed.kept.insert(0, (method, got[max_count:]))
                got = got[:max_count]
            return got
        taken = await self.hosts.started(placed.node, method, placed.kernel_id, max_count,
                                         timeout, kernel_id=placed.kernel_id)
        try:
            return await asyncio.shield(taken)
        except asyncio.CancelledError:
            keeper = asyncio.ensure_future(self._keep(placed, method, taken))
            placed.keeping.add(keeper)
            keeper.add_done_callback(placed.keeping.discard)
            raise

    async def _keep(self, placed: _Placed, method: str, taken: asyncio.Future[Any]) -> None:
        try:
            got = await taken
        except Exception:
            return  # it took nothing: a kernel that failed or ended, a node gone
        if len(got):
            placed.kept.append((method, got))

    async def drain(self, kernel_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until the kernel (every kernel: None) processed all it accepted so far."""
        ids = [kernel_id] if kernel_id is not None else list(self._placed)
        await asyncio.gather(*(self._drain(k, timeout) for k in ids))

    async def _drain(self, kernel_id: str, timeout: float | None) -> None:
        placed = self._placed_kernel(kernel_id)
        await self._verdicts_in()  # send_nowait()s are sent "so far" too: enqueued first
        mark = placed.ledger.mark()
        await self._lifecycle("drain", kernel_id, timeout)
        placed.ledger.drained(mark)

    def kernel_ids(self) -> list[str]:
        return list(self._placed)

    async def telemetry(self, kernel_id: str) -> Telemetry:
        """The node runtime's figures for the kernel (a coroutine here: it asks the node)."""
        result: Telemetry = await self._lifecycle("telemetry", kernel_id)
        return result

    async def state(self, kernel_id: str) -> KernelState:
        """The kernel's KernelState; FAILED once its node died (a coroutine here: it asks the
        node)."""
        placed = self._placed_kernel(kernel_id)
        if placed.node.dead is not None:
            return KernelState.TERMINATED if placed.node.dead == SHUT_DOWN else KernelState.FAILED
        return KernelState(await self._lifecycle("state", kernel_id))

    async def read_state(self, kernel_id: str, timeout: float = 5.0) -> list[Any]:
        result: list[Any] = await self._lifecycle("read_state", kernel_id, timeout)
        return result

    async def fetch_dead_letters(self) -> list[DeadLetter]:
        """Collect the dead letters the nodes made since their last answer (each call brings
        them too, and each send_nowait()'s answer is awaited); returns the new ones, which
        are also in `dead_letters`."""
        before = sum(self.dead_letter_counts.values())
        await self._verdicts_in()
        for host in self.hosts.live():
            await self.hosts.call(host, "letters")
        new = sum(self.dead_letter_counts.values()) - before
        return list(self.dead_letters)[-new:] if new else []

    # -- helpers ---------------------------------------------------------------------------

    async def _lifecycle(self, what: str, kernel_id: str, *args: Any) -> Any:
        placed = self._placed_kernel(kernel_id)
        return await self.hosts.call(placed.node, "lifecycle", what, kernel_id, *args,
                                kernel_id=kernel_id)

    def _kernel(self, kernel_id: str) -> KernelDef:
        for pkg in self.packages:
            if kernel_id in pkg.kernels:
                return pkg.kernels[kernel_id]
        names = sorted(k for p in self.packages for k in p.kernels)
        raise KernelStateError(f"no kernel {kernel_id!r} in the runtime's packages (they have "
                               f"{', '.join(names) or 'none'})")

    def _placed_kernel(self, kernel_id: str) -> _Placed:
        try:
            return self._placed[kernel_id]
        except KeyError:
            raise KernelStateError(f"kernel {kernel_id!r} is not launched; await "
                                   f"runtime.launch({kernel_id!r}, node=...) first") from None

    def _sendable(self, kernel_id: str) -> _Placed:
        """The kernel, if its node lives (before the ledger takes what is sent to it)."""
        placed = self._placed_kernel(kernel_id)
        self.hosts.check(placed.node, f"kernel {kernel_id!r}")
        return placed

    def _decode(self, class_name: str, data: bytes) -> Any:
        for pkg in self.packages:
            cls: Any = pkg.classes.get(class_name)
            if cls is not None:
                return cls.deserialize(data)
        raise TypeError(f"a node answered with {class_name}, which no package of the driver "
                        "has; give the driver the same packages as the nodes")

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """A dead letter settles what the ledger held of its message, then is kept as on one
        machine."""
        # A late reply's request may have entered another kernel (reply_from, across nodes).
        settled = (self._placed.values() if letter.reason is DeadLetterReason.LATE_REPLY else
                   [p for p in [self._placed.get(letter.kernel_id)] if p is not None])
        for placed in settled:
            placed.ledger.settle(letter)
        super().add_dead_letter(letter)
