"""Stateful actors: a running mean and variance of sensor readings (Welford), on the device.

Four actor instances (blocks) keep the statistics, each for the sensors whose key hashes to it.

    readings -> running_stats (device, grid=4, state=RunningStats, key="sensor_id") -> the host

state= gives each block a RunningStats in device memory, kept between messages (and across
deactivate/activate); key= sends every reading of a sensor to the same block, in order, so
the statistics of a sensor are never split between two blocks.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from ringgen import RingKernelRuntime, key_hash, message, ring_kernel

BLOCKS = 4


@message
@dataclass
class Reading:
    sensor_id: int
    value: float


@message
@dataclass
class Summary:
    sensor_id: int = 0  # of the reading this answers
    count: int = 0  # readings of the block's sensors so far
    mean: float = 0.0
    variance: float = 0.0  # the sample variance (n - 1), 0 below two readings


@dataclass
class RunningStats:
    """Welford's accumulators: one per block, in device memory."""
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # the sum of squared differences from the mean


# A Python handler, translated: the state's fields are read at entry and written back at the
# return; the same double operations in the same order as Python, so the results are equal.
@ring_kernel(kernel_id="running_stats", input=Reading, output=Summary, block=32, grid=BLOCKS,
             state=RunningStats, key="sensor_id")
def running_stats(req: Reading, state: RunningStats) -> Summary:
    state.count += 1
    delta = req.value - state.mean
    state.mean += delta / state.count
    state.m2 += delta * (req.value - state.mean)
    variance = 0.0
    if state.count > 1:
        variance = state.m2 / (state.count - 1)
    return Summary(sensor_id=req.sensor_id, count=state.count, mean=state.mean, variance=variance)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("running_stats")
    rng = np.random.default_rng(7)
    sensors = range(6)
    readings = [Reading(sensor_id=s, value=float(np.round(rng.normal(20.0 + s, 1.0 + s), 3)))
                for _ in range(200) for s in sensors]
    half = len(readings) // 2
    await runtime.send_many("running_stats", readings[:half])
    await runtime.drain("running_stats")
    await runtime.deactivate("running_stats")  # paused: the state stays in device memory
    await runtime.activate("running_stats")
    await runtime.send_many("running_stats", readings[half:])
    await runtime.drain("running_stats")
    snapshot = await runtime.read_state("running_stats")  # one RunningStats per block
    answers: list[Summary] = []
    while len(answers) < len(readings):  # every reading was answered with the running figures
        batch = await runtime.receive_many("running_stats", len(readings) - len(answers),
                                           timeout=5.0)
        if not batch:
            raise TimeoutError(f"{len(answers)} of {len(readings)} readings answered in time")
        answers += batch
    block_of = {s: key_hash(s) % BLOCKS for s in sensors}  # the block each sensor's key picks
    for b, state in enumerate(snapshot):
        owned = sorted(s for s, at in block_of.items() if at == b)
        mine = [r.value for r in readings if r.sensor_id in owned]
        if not mine:
            print(f"  block {b}: no sensor hashes here")
            continue
        exact = (state.count == len(mine) and
                 abs(state.mean - statistics.fmean(mine)) < 1e-9 and
                 abs(state.m2 / (state.count - 1) - statistics.variance(mine)) < 1e-9)
        print(f"  block {b} (sensors {owned}): {state.count} readings, mean {state.mean:.3f}, "
              f"variance {state.m2 / (state.count - 1):.3f}; matches statistics: {exact}")
    print(f"  {len(answers)} readings answered, state kept across deactivate/activate")
