"""A connection that crosses nodes: the source node's host takes the source kernel's output in
batches of struct rows and sends each batch on to every target, on this node or through the
target node's actor (Ray moves a large batch through its object store).

What a route guarantees, a bridge keeps: every target gets every message, FIFO per priority
(batches go one after another; a batch is sorted by priority, stably); a target that is full
makes the bridge wait, so the source's output ring fills and the source waits (backpressure);
a target that failed, or whose node died, turns what is sent to it into its dead letters, and
the bridge goes on with the others. A conversation keeps its correlation: a forwarded message
takes the correlation_id of the response it was (the id of the request that entered the
pipeline) as its message_id, so the next kernel answers that request, as over a route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ringgen.cluster.wire import Letter, Outcome
from ringgen.errors import KernelFaultError, KernelStateError, QueueFullError
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason
from ringgen.runtime.runtime import RingKernelRuntime

log = logging.getLogger("ringgen.cluster")

BATCH = 4096  # rows taken from the source at a time
POLL_S = 0.05  # how long one take waits for the first row (and so how soon stop() is seen)

Target = tuple[str, Any]  # (kernel id, the NodeHost actor handle of its node; None: this node)


class Bridge:
    def __init__(self, runtime: RingKernelRuntime, src: str, targets: list[Target],
                 add_letters: Callable[[list[Letter]], None], after: Bridge | None = None) -> None:
        self.runtime = runtime
        self.src = src
        self.targets = targets
        self._add_letters = add_letters  # a remote node's dead letters, sent on to the driver
        self._gone: dict[str, str] = {}  # target -> why it takes nothing more
        self._stopping = False
        # A bridge of the same source stopped before this one: its last batch goes first.
        self._after = after
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bridge-{src}")

    def stop(self) -> None:
        """Stop taking from the source (seen within POLL_S). The batch in hand still goes on
        to its targets, as what a route holds stays for its target: a paused, full target keeps
        it waiting for room, and no disconnect waits for that. ended() does."""
        self._stopping = True

    async def ended(self) -> None:
        """After stop(): the batch in hand delivered (or its targets' dead letters)."""
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        if self._after is not None:
            await self._after.ended()
            self._after = None
        while not self._stopping:
            try:
                rows = await self.runtime.receive_array(self.src, BATCH, POLL_S)
            except (KernelFaultError, KernelStateError) as e:  # the source failed or ended
                log.info("bridge from %s ends: %s", self.src, e)
                return
            if not len(rows):
                continue
            rows = np.array(rows, copy=True)  # ours to change (the source's response rows)
            rows["message_id"] = rows["correlation_id"]
            await asyncio.gather(*(self._deliver(kernel_id, host, rows)
                                   for kernel_id, host in self.targets))

    async def _deliver(self, kernel_id: str, host: Any, rows: np.ndarray) -> None:
        why = self._gone.get(kernel_id)
        if why is None:
            try:
                if host is None:
                    await self.runtime.send_array(kernel_id, rows)
                    return
                outcome: Outcome = await host.send_array.remote(kernel_id, rows, None)
                _, failure, letters = outcome
                self._add_letters(letters)
                if failure is None:
                    return
                raise failure.error()
            except QueueFullError as e:  # the target's backpressure refused (part of) the batch
                refused = np.setdiff1d(np.arange(len(rows)), e.accepted if e.accepted is not None
                                       else np.empty(0, dtype=np.intp))
                self._dead(kernel_id, rows[refused], DeadLetterReason.DROPPED_NEWEST,
                           f"connected from {self.src!r} across nodes; the target refused it: {e}")
                return
            except Exception as e:  # the target failed here, or its node (a Ray error) died
                why = f"{type(e).__name__}: {e}"
            self._gone[kernel_id] = why
            log.error("bridge %s -> %s: the target takes nothing more (%s)", self.src,
                      kernel_id, why)
        self._dead(kernel_id, rows, DeadLetterReason.KERNEL_FAILED,
                   f"connected from {self.src!r} across nodes, and the target failed: {why}")

    def _dead(self, kernel_id: str, rows: np.ndarray, reason: DeadLetterReason,
              detail: str) -> None:
        for i in range(len(rows)):
            self.runtime.add_dead_letter(DeadLetter(kernel_id, rows[i:i + 1], reason, detail))
