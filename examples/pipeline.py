"""Pipeline: a host stage acknowledges, three device stages connected on the device compute.

The host stage hands each request to three device stages that send to each other on the
device (runtime.connect): no relay, no host hop between them.

    raw values -> stage1 (host: acknowledge) -> clip -> square -> total (device) -> the caller

The conversation survives the routes: total's answer is correlated to the RawData that
entered, so `runtime.request("stage1", raw, reply_from="total")` awaits the pipeline's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import ActorContext, MaxLen, RingKernelRuntime, message, ring_kernel

LIMIT = 1000.0


@message
@dataclass
class RawData:
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Ack:
    accepted: int = 0


@message
@dataclass
class Clipped:
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Squares:
    values: Annotated[list[float], MaxLen(64)]


@message
@dataclass
class Total:
    energy: float = 0.0
    count: int = 0


@ring_kernel(kernel_id="stage1", input=RawData, output=Ack)
async def stage1(ctx: ActorContext) -> None:
    """The seed's host stage: forwards each request into the device pipeline, then acknowledges
    it to the caller. The request goes on unchanged, so the pipeline's answer names it."""
    while not ctx.should_terminate:
        raw = await ctx.receive(timeout=0.1)
        if raw is None:
            continue
        await ctx.runtime.send("clip", raw)
        await ctx.send(raw.reply(Ack, accepted=len(raw.values)))


# Every device stage is a Python handler, translated to the device: clip and square build
# their list responses element by element, total's sum is a block reduction.
@ring_kernel(kernel_id="clip", input=RawData, output=Clipped, block=32)
def clip(req: RawData) -> Clipped:
    """max then min as Python orders them: a NaN stays NaN."""
    return Clipped(values=[min(max(v, -LIMIT), LIMIT) for v in req.values])


@ring_kernel(kernel_id="square", input=Clipped, output=Squares, block=32)
def square(req: Clipped) -> Squares:
    return Squares(values=[v * v for v in req.values])


@ring_kernel(kernel_id="total", input=Squares, output=Total, block=32)
def total(req: Squares) -> Total:
    """Written in Python, translated: the sum is a block reduction that adds in Python's order."""
    return Total(energy=sum(req.values), count=len(req.values))


DEVICE_STAGES = ("clip", "square", "total")


async def start(runtime: RingKernelRuntime) -> None:
    """Launch the device stages and connect them: clip -> square -> total."""
    for stage in reversed(DEVICE_STAGES):
        await runtime.launch(stage)
    await runtime.connect("clip", "square")
    await runtime.connect("square", "total")


async def demo(runtime: RingKernelRuntime) -> None:
    await start(runtime)
    await runtime.launch("stage1")
    inputs = [RawData(values=[1.0, 2.0, 3.0]), RawData(values=[5000.0, -2.0]),
              RawData(values=[0.5] * 64, priority=250)]
    for raw in inputs:
        result = await runtime.request("stage1", raw, timeout=5.0, reply_from="total")
        ack = await runtime.receive("stage1", timeout=5.0)
        assert result.correlation_id == ack.correlation_id == raw.message_id
        print(f"  {ack.accepted:2} values acknowledged -> energy {result.energy} "
              f"(after clipping to +-{LIMIT:g}), answered by total")
    # The device stages alone: many requests in flight, each answered by the pipeline's end.
    many = [RawData(values=[float(i % 7)] * 8, priority=(i * 37) % 256) for i in range(1000)]
    await runtime.send_many("clip", many)
    results: list[Total] = []
    while len(results) < len(many):
        batch = await runtime.receive_many("total", len(many) - len(results), timeout=5.0)
        if not batch:
            raise TimeoutError(f"the pipeline answered {len(results)} of {len(many)} in time")
        results += batch
    answered = {r.correlation_id for r in results} == {m.message_id for m in many}
    print(f"  1000 requests through clip -> square -> total: each answered once: {answered}")
