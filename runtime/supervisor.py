"""Supervision, one-for-one as in Erlang/OTP: `launch(..., restart="on_failure")` relaunches a
kernel that FAILED (a crash, a kill, a trap, a region fault, a hang the watchdog found) after
`backoff_s`, with what launch() gave it: its connections (in and out), the registered buffers
and its state defaults. Past `max_restarts` failures within `within_s` it stays FAILED, and
its error text and a GAVE_UP event say so.

What the failed incarnation held (the request a handler was in, the requests in its lanes, the
host backlog):
- redeliver=False (at most once): dead letters with the reason; every request() waiting on
  the kernel raises KernelFaultError.
- redeliver=True (at least once): carried over to the next incarnation, in order. The requests
  a handler had taken are flagged FLAG_REDELIVERED in their header (C:
  `req.flags & RG_FLAG_REDELIVERED`; Python: the `flags` field of struct rows) so a handler can
  tell; one that is held again when a flagged incarnation fails is not redelivered twice but
  becomes a dead letter. A request() waiting on a carried message keeps waiting, and gets the
  redelivered answer; the others raise KernelFaultError. Responses already received by the
  host and not yet read stay readable after the restart in both modes.

Between the failure and the restart (backoff_s) the kernel is FAILED: sends raise
KernelFaultError whose text says a restart follows, and messages routed to it are dead letters
(runtime/routes.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ringgen.errors import KernelFaultError, ValidationError
from ringgen.runtime.channels import Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.events import EventKind

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime

log = logging.getLogger("ringgen.runtime")

RESTART_MODES = ("never", "on_failure")


@dataclass(frozen=True)
class RestartPolicy:
    restart: str = "never"
    max_restarts: int = 3  # restarts allowed within within_s ...
    within_s: float = 60.0  # ... seconds; one more failure in that window gives up
    backoff_s: float = 0.5  # between a failure and its restart
    redeliver: bool = False

    def __post_init__(self) -> None:
        if self.restart not in RESTART_MODES:
            raise ValidationError(f"restart must be one of {', '.join(map(repr, RESTART_MODES))}; "
                                  f"got {self.restart!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValidationError(f"max_restarts must be an int >= 0; got {self.max_restarts!r}")
        if not self.within_s > 0:
            raise ValidationError(f"within_s must be > 0 seconds; got {self.within_s!r}")
        if not self.backoff_s >= 0:
            raise ValidationError(f"backoff_s must be >= 0 seconds; got {self.backoff_s!r}")
        if self.redeliver and self.restart == "never":
            raise ValidationError("redeliver=True needs restart='on_failure': without a restart "
                                  "there is no incarnation to redeliver to")


@dataclass
class Carried:
    """What a failed incarnation hands to the next one (redeliver=True): its messages in order,
    and the request()s waiting on them. (The responses it received and nobody read yet, the
    next one takes in any case: Channel.adopt.)"""

    entries: list[tuple[Any, int]] = field(default_factory=list)  # (backlog entry, priority)
    waiters: dict[int, asyncio.Future[Any]] = field(default_factory=dict)  # request()s


@dataclass(frozen=True)
class Decision:
    """A failure's fate, decided once at the failure: restart number `number` of the window."""

    number: int
    policy: RestartPolicy

    def note(self) -> str:
        return (f"; it restarts in {self.policy.backoff_s:g} s (restart {self.number} of "
                f"{self.policy.max_restarts} within {self.policy.within_s:g} s)")


class Supervisor:
    """The runtime's restarter: policies and restart history per kernel id."""

    def __init__(self, runtime: RingKernelRuntime) -> None:
        self.runtime = runtime
        self._policies: dict[str, RestartPolicy] = {}
        self._relaunch: dict[str, Callable[[bool], Awaitable[None]]] = {}
        self._history: dict[str, deque[float]] = {}  # restart times within the window
        self._restarts: dict[str, int] = {}  # since the last launch() by the user
        self._tasks: dict[str, asyncio.Task[None]] = {}  # pending restarts, by kernel id

    def register(self, kernel_id: str, policy: RestartPolicy,
                 relaunch: Callable[[bool], Awaitable[None]]) -> None:
        """launch() by the user: the policy, and how to launch it again (activate or not).
        The restart count starts over."""
        self._policies[kernel_id] = policy
        self._relaunch[kernel_id] = relaunch
        self._history[kernel_id] = deque()
        self._restarts[kernel_id] = 0

    def restarts(self, kernel_id: str) -> int:
        return self._restarts.get(kernel_id, 0)

    def decide(self, channel: Channel) -> Decision | None:
        """At a failure: a restart (counted against the budget), or None (why: see
        _gave_up_reason)."""
        policy = self._policies.get(channel.kernel_id)
        if policy is None or policy.restart != "on_failure" or self.runtime.closing \
                or channel.device_lost() is not None:
            return None
        history = self._history[channel.kernel_id]
        now = time.monotonic()
        while history and now - history[0] > policy.within_s:
            history.popleft()
        if len(history) >= policy.max_restarts:
            return None
        history.append(now)
        return Decision(len(history), policy)

    def _gave_up_reason(self, channel: Channel) -> str | None:
        policy = self._policies.get(channel.kernel_id)
        if policy is None or policy.restart != "on_failure" or self.runtime.closing:
            return None
        lost = channel.device_lost()
        if lost is not None:
            return (f"not restarted: {lost}. The device cannot run kernels again in this "
                    "process; restart the process")
        return (f"not restarted: it failed more than max_restarts={policy.max_restarts} times "
                f"within {policy.within_s:g} s, so it stays FAILED; launch() it again to start "
                "over")

    def failed(self, channel: Channel, reason: str, was: KernelState,
               decision: Decision | None, carried: Carried) -> None:
        """After a channel failed (its waiters and dead letters settled as `decision` said):
        the events, then the restart or the giving up."""
        kernel_id = channel.kernel_id
        events = self.runtime.event_bus
        events.publish(EventKind.FAILED, kernel_id, reason, self.restarts(kernel_id))
        lost = channel.device_lost()
        if lost is not None and channel.lost_device is None:  # it lost the device itself
            self.runtime.device_lost(channel, lost)
        if decision is None:
            gave_up = self._gave_up_reason(channel)
            if gave_up is not None:
                channel.restart_note = f"; {gave_up}"
                log.error("kernel %s %s", kernel_id, gave_up)
                events.publish(EventKind.GAVE_UP, kernel_id, gave_up, self.restarts(kernel_id))
            return
        task = self.runtime.loop.create_task(
            self._restart(channel, decision, was is not KernelState.PAUSED
                          and was is not KernelState.LAUNCHED, carried),
            name=f"ringgen restart {kernel_id}")
        self._tasks[kernel_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(kernel_id, None)
                               if self._tasks.get(kernel_id) is t else None)

    async def _restart(self, old: Channel, decision: Decision, active: bool,
                       carried: Carried) -> None:
        kernel_id = old.kernel_id
        try:
            await asyncio.sleep(decision.policy.backoff_s)
            if self.runtime.closing or self.runtime.current(kernel_id) is not old \
                    or old.state is not KernelState.FAILED:  # terminated or launched meanwhile
                _abandon_carried(old, carried, DeadLetterReason.TERMINATED,
                                 "the kernel was terminated (or launched anew) before its restart")
                return
            await self._relaunch[kernel_id](active)
        except asyncio.CancelledError:
            _abandon_carried(old, carried, DeadLetterReason.TERMINATED,
                             "the kernel was terminated (or the runtime shut down) before its "
                             "restart")
            raise
        except Exception as e:
            why = f"not restarted: its relaunch failed: {type(e).__name__}: {e}"
            old.restart_note = f"; {why}"
            log.error("kernel %s %s", kernel_id, why)
            _abandon_carried(old, carried, DeadLetterReason.KERNEL_FAILED, why)
            self.runtime.event_bus.publish(EventKind.GAVE_UP, kernel_id, why,
                                           self.restarts(kernel_id))
            return
        self._restarts[kernel_id] = self.restarts(kernel_id) + 1
        new = self.runtime.current(kernel_id)
        assert new is not None
        if new.state is KernelState.FAILED:  # it failed again while it was coming up
            _abandon_carried(old, carried, DeadLetterReason.KERNEL_FAILED,
                             f"its restart failed at once: {new.failure}")
            return
        new.adopt(old, carried)
        log.warning("kernel %s restarted (restart %d of %d within %g s)", kernel_id,
                    decision.number, decision.policy.max_restarts, decision.policy.within_s)
        self.runtime.event_bus.publish(EventKind.RESTARTED, kernel_id, old.failure,
                                       self.restarts(kernel_id))

    async def cancel(self, kernel_id: str) -> None:
        """terminate() or launch() by the user: a restart still to come (or under way) for the
        kernel id is called off, so that it cannot bring back what the user stopped."""
        task = self._tasks.pop(kernel_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Shutdown: pending restarts are called off (what they carried: dead letters)."""
        for kernel_id in list(self._tasks):
            await self.cancel(kernel_id)


def _abandon_carried(old: Channel, carried: Carried, reason: DeadLetterReason,
                     why: str) -> None:
    """A restart that will not happen: what it carried are dead letters, its waiters fail."""
    for entry, _ in carried.entries:
        old.dead_letter(old.message_of(entry), reason, f"{why} (it was kept for redelivery)",
                        accepted=True)
    error = KernelFaultError(f"kernel {old.kernel_id!r} failed: {old.failure}; {why}")
    for future in carried.waiters.values():
        if not future.done():
            future.set_exception(error)
    carried.entries.clear()
    carried.waiters.clear()
