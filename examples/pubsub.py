"""Pub-sub: one producer, a host actor fanning each event out to
three subscriber kernels on the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ringgen import ActorContext, MaxLen, RingKernelRuntime, message, ring_kernel


@message
@dataclass
class Event:
    data: Annotated[str, MaxLen(32)]


@message
@dataclass
class Delivery:
    subscriber: np.int32 = 0
    length: np.int32 = 0


SUBSCRIBERS = ["sub1", "sub2", "sub3"]

SUBSCRIBER_CU = r"""
// A subscriber acknowledges an event with its number (from the block's kernel) and the
// event's length; the three kernels share this handler.
__device__ bool subscriber_ack(int32_t n, const Event& req, Delivery& resp) {
    if (threadIdx.x == 0) {
        resp.subscriber = n;
        resp.length = (int32_t)req.data.len;
    }
    return true;
}
__device__ bool sub1_handle(const Event& req, Delivery& resp, rg_ctx&) {
    return subscriber_ack(1, req, resp);
}
__device__ bool sub2_handle(const Event& req, Delivery& resp, rg_ctx&) {
    return subscriber_ack(2, req, resp);
}
__device__ bool sub3_handle(const Event& req, Delivery& resp, rg_ctx&) {
    return subscriber_ack(3, req, resp);
}
"""


def _ack(n: int, req: Event) -> Delivery:
    return Delivery(subscriber=n, length=len(req.data.encode()))


@ring_kernel(kernel_id="sub1", input=Event, output=Delivery, cuda=SUBSCRIBER_CU)
def sub1(req: Event) -> Delivery:
    return _ack(1, req)


@ring_kernel(kernel_id="sub2", input=Event, output=Delivery, cuda=SUBSCRIBER_CU)
def sub2(req: Event) -> Delivery:
    return _ack(2, req)


@ring_kernel(kernel_id="sub3", input=Event, output=Delivery, cuda=SUBSCRIBER_CU)
def sub3(req: Event) -> Delivery:
    return _ack(3, req)


async def forward_to(runtime: RingKernelRuntime, subscriber: str, event: Event) -> None:
    await runtime.send(subscriber, Event(data=event.data, priority=event.priority))


@ring_kernel(kernel_id="topic_processor", input=Event)
async def topic_processor(ctx: ActorContext) -> None:
    while not ctx.should_terminate:
        event = await ctx.receive(timeout=0.1)
        if event is None:
            continue
        for sub in SUBSCRIBERS:
            await forward_to(ctx.runtime, sub, event)


async def demo(runtime: RingKernelRuntime) -> None:
    for sub in SUBSCRIBERS:
        await runtime.launch(sub)
    await runtime.launch("topic_processor")
    for text in ("update", "price 42.0", "shutdown soon"):
        await runtime.send("topic_processor", Event(data=text))
    for sub in SUBSCRIBERS:
        got = [await runtime.receive(sub, timeout=5.0) for _ in range(3)]
        print(f"  {sub} received {len(got)} events, lengths {[d.length for d in got]}")
