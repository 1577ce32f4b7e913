"""Pub-sub: a topic kernel fans every event out to three subscribers, on the device.

The publisher sends to the topic kernel, which is connected to the three subscriber kernels
(runtime.connect with several targets): each gets every event once, with no host hop.

    publisher -> topic_processor (device) => sub1, sub2, sub3 (device) -> the host
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ringgen import MaxLen, RingKernelRuntime, message, ring_kernel


@message
@dataclass
class Event:
    data: Annotated[str, MaxLen(32)]


@message
@dataclass
class Delivery:
    subscriber: np.int32 = 0
    length: np.int32 = 0  # of the event's text, in characters


SUBSCRIBERS = ["sub1", "sub2", "sub3"]

# A str field is copied byte by byte, which Python handlers do not translate yet: C.
TOPIC_CU = r"""
__device__ bool topic_processor_handle(const Event& req, Event& resp, topic_processor_ctx& ctx) {
    (void)ctx;
    for (uint32_t i = threadIdx.x; i < req.data.len; i += blockDim.x)
        resp.data.data[i] = req.data.data[i];
    if (threadIdx.x == 0) resp.data.len = req.data.len;
    return true;
}
"""


@ring_kernel(kernel_id="topic_processor", input=Event, output=Event, cuda=TOPIC_CU)
def topic_processor(req: Event) -> Event:
    """Every event goes on to every subscriber connected to the topic."""
    return Event(data=req.data)


# The subscribers are Python handlers, translated to device code by `ringgen build`.
@ring_kernel(kernel_id="sub1", input=Event, output=Delivery)
def sub1(req: Event) -> Delivery:
    return Delivery(subscriber=1, length=len(req.data))


@ring_kernel(kernel_id="sub2", input=Event, output=Delivery)
def sub2(req: Event) -> Delivery:
    return Delivery(subscriber=2, length=len(req.data))


@ring_kernel(kernel_id="sub3", input=Event, output=Delivery)
def sub3(req: Event) -> Delivery:
    return Delivery(subscriber=3, length=len(req.data))


async def demo(runtime: RingKernelRuntime) -> None:
    for sub in SUBSCRIBERS:
        await runtime.launch(sub)
    await runtime.launch("topic_processor")
    await runtime.connect("topic_processor", *SUBSCRIBERS)  # fan-out, on the device
    events = [Event(data=text) for text in ("update", "price 42.0", "shutdown soon")]
    for event in events:
        await runtime.send("topic_processor", event)
    for sub in SUBSCRIBERS:
        got = [await runtime.receive(sub, timeout=5.0) for _ in events]
        # A conversation: each delivery is correlated to the event the publisher sent.
        in_order = [d.correlation_id for d in got] == [e.message_id for e in events]
        print(f"  {sub} received {len(got)} events, lengths {[int(d.length) for d in got]}, "
              f"in order: {in_order}")
