"""The node hosts of one ClusterRuntime: a NodeHost actor per node that runs kernels, started
on first use, watched for its death, and called with every error raised again on the driver.

A host's death is learned two ways, whichever comes first: a call that awaits forever
(`alive`) fails, or any other call fails with Ray's actor-death error. Either way `on_death`
runs once, so that the runtime fails the node's kernels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from ringgen.cluster.node import WAITING_CALLS, NodeHost
from ringgen.cluster.ray_api import is_actor_death, node_affinity
from ringgen.cluster.wire import Answer, Letter, PackageSpec
from ringgen.errors import KernelFaultError, KernelStateError
from ringgen.schema.package import Package

log = logging.getLogger("ringgen.cluster")

SHUT_DOWN = "the runtime was shut down"  # why a node's host is gone after shutdown()
WATCH_END_S = 5.0  # how long shutdown() waits for Ray to report its killed hosts dead

# A NodeHost runs each call on a thread of its pool, and a call that waits (WAITING_CALLS,
# cluster/node.py) holds its thread meanwhile. Those calls get at most THREADS -
# CONTROL_THREADS of them, so that activate(), terminate() or shutdown() -- what ends the
# waits -- always find a thread (alive() holds one for good).
THREADS = 1000
CONTROL_THREADS = 64


@dataclasses.dataclass
class Host:
    node_id: str
    handle: Any  # the NodeHost actor
    pid: int = 0
    backend: str = ""
    dead: str | None = None  # why the host is gone
    watch: asyncio.Task[None] | None = None
    waiting: asyncio.Semaphore = dataclasses.field(  # its threads that calls may wait on
        default_factory=lambda: asyncio.Semaphore(THREADS - CONTROL_THREADS))


class Hosts:
    def __init__(self, ray: Any, packages: list[Package], options: dict[str, Any],
                 on_letters: Callable[[list[Letter]], None],
                 on_death: Callable[[Host], None]) -> None:
        self.ray = ray
        self.packages = packages
        self.options = options  # for each node's RingKernelRuntime
        self.on_letters = on_letters  # the dead letters each answer brings
        self.on_death = on_death
        self.closing = False
        self._hosts: dict[str, Host] = {}
        self._starting: dict[str, asyncio.Future[Host]] = {}

    def live(self) -> list[Host]:
        return [h for h in self._hosts.values() if h.dead is None]

    async def nodes(self) -> list[str]:
        """The live Ray nodes' ids, `first` (the driver's) first."""
        alive = await asyncio.get_running_loop().run_in_executor(None, self.ray.nodes)
        first = self.ray.get_runtime_context().get_node_id()
        return sorted(sorted(n["NodeID"] for n in alive if n.get("Alive")),
                      key=lambda i: i != first)

    async def get(self, node_id: str) -> Host:
        """The node's host, started on first use (once, however many launch at once)."""
        host = self._hosts.get(node_id)
        if host is not None:
            if host.dead is not None:
                raise KernelStateError(f"node {node_id} is gone ({host.dead}); launch on "
                                       "another node")
            return host
        if node_id not in self._starting:
            self._starting[node_id] = asyncio.ensure_future(self._start(node_id))
        try:
            return await asyncio.shield(self._starting[node_id])
        finally:
            if node_id in self._starting and self._starting[node_id].done():
                del self._starting[node_id]

    async def _start(self, node_id: str) -> Host:
        if node_id not in await self.nodes():
            raise KernelStateError(f"no live Ray node {node_id!r}; await runtime.nodes() lists "
                                   "the nodes that can host kernels")
        # A threaded actor (cluster/node.py): as many calls at once as an async one had, each
        # on a thread of its pool (alive() holds one for good).
        actor = self.ray.remote(NodeHost).options(
            num_cpus=0, max_concurrency=THREADS, max_restarts=0,
            scheduling_strategy=node_affinity(node_id))
        handle = actor.remote([PackageSpec.of(p) for p in self.packages], self.options)
        host = Host(node_id, handle)
        try:
            host.pid, host.backend, where = await self.call(host, "start")
            if where != node_id:  # the affinity is hard (soft=False): this would be Ray's bug
                raise KernelStateError(f"the host for node {node_id} started on node {where}")
        except BaseException:
            self.ray.kill(handle, no_restart=True)  # a host that could not start holds nothing
            raise
        self._hosts[node_id] = host
        host.watch = asyncio.ensure_future(self._watch(host))
        log.info("node %s hosts kernels (process %d, backend %s)", node_id, host.pid,
                 host.backend)
        return host

    async def _watch(self, host: Host) -> None:
        """Awaits a call that never returns: it fails when the host dies."""
        try:
            await host.handle.alive.remote()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not self.closing:
                self.died(host, f"{type(e).__name__}: {e}")

    def died(self, host: Host, why: str) -> None:
        if host.dead is not None:
            return
        host.dead = why.splitlines()[0] if why else "its host actor died"
        log.error("node %s died: %s", host.node_id, host.dead)
        self.on_death(host)

    def check(self, host: Host, what: str) -> None:
        """KernelStateError once shut down, KernelFaultError once the host died."""
        if self.closing:
            raise KernelStateError(f"{what}: the runtime is shut down")
        if host.dead is not None:
            raise KernelFaultError(f"{what} failed: node {host.node_id} died ({host.dead})")

    async def call(self, host: Host, method: str, *args: Any, kernel_id: str | None = None) -> Any:
        """One call of a host: its value, or its error raised here again; a dead host is a
        KernelFaultError (for the kernel named)."""
        return await asyncio.shield(await self.started(host, method, *args, kernel_id=kernel_id))

    async def started(self, host: Host, method: str, *args: Any,
                      kernel_id: str | None = None) -> asyncio.Future[Any]:
        """The call submitted (a call that may wait, once the host has a thread for it): its
        outcome() as a future, which runs to the call's end even if its awaiter is cancelled
        (the call runs on the node all the same, and holds its thread until then)."""
        waits = method in WAITING_CALLS
        if waits:
            await host.waiting.acquire()
        try:
            ref = self.submit(host, method, *args, kernel_id=kernel_id)
        except BaseException:
            if waits:
                host.waiting.release()
            raise
        ended = asyncio.ensure_future(self.outcome(host, ref, kernel_id))
        ended.add_done_callback(lambda f: f.cancelled() or f.exception())  # an error is the awaiter's
        if waits:
            ended.add_done_callback(lambda _: host.waiting.release())
        return ended

    def submit(self, host: Host, method: str, *args: Any, kernel_id: str | None = None) -> Any:
        """The call handed to Ray now (calls from this process start on the node in the order
        they were submitted); outcome() awaits what it returns."""
        if method != "shutdown":
            self.check(host, self._what(host, kernel_id))
        return getattr(host.handle, method).remote(*args)

    async def outcome(self, host: Host, ref: Any, kernel_id: str | None = None) -> Any:
        """A submitted call's value, or its error raised here again (see call())."""
        try:
            outcome: Answer = await ref
        except Exception as e:
            if not is_actor_death(e):
                raise
            self.died(host, f"{type(e).__name__}: {e}")
            raise KernelFaultError(f"{self._what(host, kernel_id)} failed: node {host.node_id} "
                                   f"died ({host.dead})") from None
        if isinstance(outcome, bytes):
            return outcome  # a request's reply that is all it says (NodeHost.ask)
        value, failure, letters = outcome
        if letters:
            self.on_letters(letters)
        if failure is not None:
            raise failure.error()
        return value

    @staticmethod
    def _what(host: Host, kernel_id: str | None) -> str:
        return f"kernel {kernel_id!r}" if kernel_id is not None else f"node {host.node_id}"

    async def processes(self) -> dict[str, tuple[int, list[int]]]:
        return {h.node_id: (h.pid, await h.handle.runner_pids.remote()) for h in self.live()}

    async def shutdown(self, timeout: float) -> None:
        """Each live host's runtime shut down, then the host ended (its runners with it)."""
        self.closing = True
        if self._starting:
            await asyncio.gather(*self._starting.values(), return_exceptions=True)
        hosts = self.live()
        results = await asyncio.gather(*(self.call(h, "shutdown", timeout) for h in hosts),
                                       return_exceptions=True)
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, BaseException):
                log.error("shutting node %s down failed: %s", host.node_id, result)
            self.ray.kill(host.handle, no_restart=True)
            host.dead = SHUT_DOWN
        # Each watch ends as its host's death reaches it, not cancelled: Ray Client fails a
        # cancelled call's future once more when it disconnects, and prints the error.
        watches = [h.watch for h in self._hosts.values() if h.watch is not None]
        if watches:
            _, late = await asyncio.wait(watches, timeout=WATCH_END_S)
            for watch in late:
                watch.cancel()
