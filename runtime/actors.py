"""Host actors: `@ring_kernel(kernel_id=...) async def f(ctx)`, a loop over ctx.receive(), run as
asyncio tasks on the same queues and rules as device kernels."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ringgen.errors import KernelFaultError, KernelStateError
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

    async def send(self, response_or_target: Any, msg: Any = None) -> None:
        """`ctx.send(response)`: a response to this actor's callers (to the request() it
        answers, by correlation_id, else to whoever calls receive() on this actor), or, while
        the actor is connected (runtime.connect), to its targets.
        `ctx.send("audit", msg)`: one message to the declared send target "audit" (sends=),
        to what runtime.connect("<kernel_id>.audit", ...) bound it to; a dead letter
        (UNBOUND) while nothing is. Either way, a reply to a message that came over a
        connection keeps that conversation's correlation_id, and waits while a target is full."""
        if isinstance(response_or_target, str):
            await self._channel.send_to(response_or_target, msg)
            return
        if msg is not None:
            raise TypeError("ctx.send takes a response, or a target name and a message")
        self._channel.check_response(response_or_target)
        response = self._channel.answered(response_or_target)
        if not await self._channel.forward(self.kernel_id, response):
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
        kdef = runtime._kernel(kernel_id)
        # sends= of its @ring_kernel: port p is the p-th (runtime/routes.py)
        self.sends: tuple[tuple[str, type], ...] = kdef.spec.sends if kdef is not None else ()
        self._send_cls = dict(self.sends)
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

    def answered(self, response: Any) -> Any:
        """The response, once it answers the message in hand: that one is done with. A reply
        to a message that is part of a conversation (it came over a connection, so it has a
        correlation_id) carries the conversation's correlation_id on."""
        held = self._in_hand
        if held is None or response.correlation_id != held.message_id:
            return response
        self._in_hand = None
        if held.correlation_id is not None:
            return dataclasses.replace(response, correlation_id=held.correlation_id)
        return response

    async def send_to(self, name: str, msg: Any) -> None:
        """ctx.send(name, msg): to the declared target's connections, else a dead letter."""
        cls: Any = self._send_cls.get(name)  # (Any: `type(msg) is cls` would narrow msg)
        if cls is None:
            declared = ", ".join(n for n, _ in self.sends) or "none"
            raise TypeError(f"actor {self.kernel_id!r} declares no send target {name!r} (its "
                            f"sends=: {declared}); add it to @ring_kernel(sends=...)")
        if type(msg) is not cls:
            raise TypeError(f"send target {name!r} of {self.kernel_id!r} takes {cls.__name__}, "
                            f"not {type(msg).__name__}")
        held = self._in_hand
        if msg.correlation_id is None and held is not None:  # the conversation goes on
            msg = dataclasses.replace(msg, correlation_id=held.correlation_id or held.message_id)
        end = f"{self.kernel_id}.{name}"
        if not await self.forward(end, msg):
            self.dead_letter(msg, DeadLetterReason.UNBOUND,
                             f"sent to {end!r}, which is bound to no kernel: bind it with await "
                             f"runtime.connect({end!r}, <kernel_id>) before the actor sends")

    async def forward(self, end: str, msg: Any) -> bool:
        """msg to every target `end` is connected to (False: it is connected to none). A
        target that is gone makes it a dead letter of that target; the actor keeps running."""
        dsts = self.runtime.routes.edges.get(end)
        if not dsts:
            return False
        for kernel_id in dsts:
            target = self.runtime.channel(kernel_id)
            try:
                # under the target's backpressure (a drop: a dead letter); a device target keeps
                # the conversation (reply_from= across this hop)
                await target.send_in_conversation(msg)
            except (KernelFaultError, KernelStateError) as e:
                failed = target.state is KernelState.FAILED
                target.dead_letter(msg, DeadLetterReason.KERNEL_FAILED if failed
                                   else DeadLetterReason.TERMINATED,
                                   f"sent by {end!r} to {kernel_id!r}, which is gone: {e}")
        return True

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
