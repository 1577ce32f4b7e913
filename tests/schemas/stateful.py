"""Stateful kernels under test: a per-sensor tally kept by each block (state=), routed by key
and not, and the Python reference each is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import message, ring_kernel


@message
@dataclass
class Reading:
    sensor: int
    value: int
    seq: int = 0


@message
@dataclass
class Tallied:
    sensor: int = 0
    block: np.int32 = 0
    count: int = 0
    total: int = 0


@dataclass
class Tally:
    count: int = 0
    total: int = 0
    last_seq: int = -1
    mean: float = 0.0
    seen_odd: bool = False
    narrow: np.int32 = 7  # a non-zero default: the host writes the defaults at launch


TALLY_CU = r"""
__device__ bool {id}_handle(const Reading& req, Tallied& resp, Tally& state, {id}_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        state.count += 1;
        state.total += req.value;
        state.last_seq = req.seq;
        state.mean += ((double)req.value - state.mean) / (double)state.count;
        if (req.value % 2) state.seen_odd = 1;
        state.narrow += 1;
        resp.sensor = req.sensor;
        resp.block = (int32_t)blockIdx.x;
        resp.count = state.count;
        resp.total = state.total;
    }
    return true;
}
"""


def reference(req: Reading, state: Tally) -> Tallied:
    """What each block does to its own state (the Python meaning of TALLY_CU)."""
    state.count += 1
    state.total += req.value
    state.last_seq = req.seq
    state.mean += (req.value - state.mean) / state.count
    state.seen_odd = state.seen_odd or bool(req.value % 2)
    state.narrow = np.int32(state.narrow + 1)
    return Tallied(sensor=req.sensor, count=state.count, total=state.total)


@ring_kernel(kernel_id="tally", input=Reading, output=Tallied, block=4, grid=1, state=Tally,
             cuda=TALLY_CU.replace("{id}", "tally"))
def tally(req: Reading, state: Tally) -> Tallied:
    return reference(req, state)


@ring_kernel(kernel_id="keyed", input=Reading, output=Tallied, block=4, grid=4, state=Tally,
             key="sensor", cuda=TALLY_CU.replace("{id}", "keyed"))
def keyed(req: Reading, state: Tally) -> Tallied:
    return reference(req, state)


@ring_kernel(kernel_id="unkeyed", input=Reading, output=Tallied, block=4, grid=4, state=Tally,
             cuda=TALLY_CU.replace("{id}", "unkeyed"))
def unkeyed(req: Reading, state: Tally) -> Tallied:
    return reference(req, state)
