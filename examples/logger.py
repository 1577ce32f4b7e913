"""Fire-and-forget: send and carry on; a host actor writes the events."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Annotated

from ringgen import ActorContext, MaxLen, RingKernelRuntime, message, ring_kernel

log = logging.getLogger("examples.logger")


@message
@dataclass
class LogEvent:
    level: Annotated[str, MaxLen(8)]
    message: Annotated[str, MaxLen(200)]
    timestamp: float = field(default_factory=time.time)


# What the logger wrote, for whoever wants to look (the demo, the tests).
WRITTEN: list[LogEvent] = []


@ring_kernel(kernel_id="logger", input=LogEvent)
async def logger(ctx: ActorContext) -> None:
    while not ctx.should_terminate:
        event = await ctx.receive(timeout=0.1)
        if event is None:
            continue
        WRITTEN.append(event)
        log.log(logging.getLevelName(event.level), "%s", event.message)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("logger")
    await runtime.send("logger", LogEvent(level="INFO", message="Started"))
    await runtime.send("logger", LogEvent(level="WARNING", message="Disk 91% full", priority=200))
    await runtime.send("logger", LogEvent(level="DEBUG", message="cache warm", priority=10))
    print("  sent 3 events without waiting for anything")
    await runtime.drain("logger", timeout=5.0)  # what a sender does before it shuts down
    for event in WRITTEN:
        print(f"  logged {event.level:7} {event.message}")
