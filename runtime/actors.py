"""Host actors: `@ring_kernel(kernel_id=...) async def f(ctx)`, a loop over ctx.receive(), run as
asyncio tasks on the same queues and rules as device kernels."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ringgen.runtime.channels import Channel, KernelState
from ringgen.runtime.dead_letters import DeadLetterReason
from ringgen.runtime.waiting import wait_in, wake_all

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime
    from ringgen.runtime.supervisor import Carried, Decision

log = logging.getLogger("ringgen.runtime")

Actor = Callable[["ActorContext"], Awaitable[Any]]


class ActorContext:
    """What a host actor's body is given."""

    def __init__(self, channel: HostChannel) -> None:
        self._channel = channel
        self.kernel_id = channel.kernel_id
        self.runtime: RingKernelRuntime = channel.runtime

    @property
    def should_terminate(self) -> bool:
        return self._channel.terminating

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message in priority order; None on timeout or when terminating."""
        return await self._channel.next_message(timeout)

    async def send(self, response: Any) -> None:
        """A response to this actor's callers: to the request() it answers (by correlation_id),
        else to whoever calls receive() on this actor."""
        self._channel.check_response(response)
        self._channel.answered(response)
        self._channel.replies.route([response])

    def fail(self) -> None:
        """Count a handler error without stopping the actor (as ctx.fail() on a device)."""
        self._channel.counters.errors += 1


class HostChannel(Channel):
    backend_name = "host"

    def __init__(self, runtime: RingKernelRuntime, kernel_id: str, actor: Actor,
                 input_cls: type | None, output_cls: type | None, queue_size: int,
                 backpressure: str) -> None:
        out_dtype = None
        if output_cls is not None:
            out_dtype = runtime.dtype_of(output_cls)
        super().__init__(runtime, kernel_id, input_cls, output_cls, queue_size, backpressure,
                         out_dtype)
        self.actor = actor
        self.answers = True  # a host actor may ctx.send() whatever its declaration says
        self.terminating = False
        # The message the actor received last, until it answers it or asks for the next: what
        # it holds if it raises or is cancelled meanwhile (then a dead letter).
        self._in_hand: Any = None
        self._receivers: deque[asyncio.Future[None]] = deque()
        self.ctx = ActorContext(self)
        self.task = self.loop.create_task(self._run(), name=f"ringgen actor {kernel_id}")

    async def _run(self) -> None:
        try:
            await self.actor(self.ctx)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.counters.errors += 1
            log.exception("host actor %s raised", self.kernel_id)
            self.fail(f"{type(e).__name__}: {e}")

    def hand_over(self, reason: str, decision: Decision | None) -> Carried:
        self._drop_in_hand(DeadLetterReason.KERNEL_FAILED, f"the actor failed: {reason}")
        return super().hand_over(reason, decision)

    def _drop_in_hand(self, reason: DeadLetterReason, why: str) -> None:
        """The message the actor held unanswered goes to the dead letters; it had been
        counted as processed when the actor received it."""
        msg, self._in_hand = self._in_hand, None
        if msg is not None:
            self.counters.processed -= 1
            self.dead_letter(msg, reason, f"{why}, while handling it", accepted=True)

    def answered(self, response: Any) -> None:
        if self._in_hand is not None and response.correlation_id == self._in_hand.message_id:
            self._in_hand = None

    def check_response(self, response: Any) -> None:
        if self.output_cls is not None and type(response) is not self.output_cls:
            raise TypeError(f"actor {self.kernel_id!r} answers {self.output_cls.__name__}, "
                            f"not {type(response).__name__}")
        if not hasattr(response, "correlation_id"):
            raise TypeError(f"ctx.send takes @message objects, not {type(response).__name__}")

    def enqueued(self) -> None:
        wake_all(self._receivers)

    async def next_message(self, timeout: float | None) -> Any:
        self._in_hand = None  # the actor is done with the last one
        deadline = None if timeout is None else self.loop.time() + timeout
        while not self.terminating:
            if self.state is KernelState.ACTIVE and len(self.backlog):
                msg = self._in_hand = self.backlog.pop()
                self.counters.processed += 1
                self.space_freed()
                return msg
            if not await wait_in(self.deadlines, self._receivers, deadline):
                return None
        return None

    async def activate(self) -> None:
        await super().activate()
        wake_all(self._receivers)

    async def terminate(self, timeout: float) -> None:
        if self.state is KernelState.TERMINATED:
            return
        self.terminating = True
        wake_all(self._receivers)
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            log.warning("host actor %s did not return within %.1f s of terminate; cancelled",
                        self.kernel_id, timeout)
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            if self.state is not KernelState.FAILED:
                self._drop_in_hand(DeadLetterReason.TERMINATED, "the actor was cancelled")
        if self.state is not KernelState.FAILED:
            self.closed("actor terminated before receiving it")
