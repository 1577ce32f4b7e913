"""The example pipeline's three device stages (examples/pipeline.py: clip -> square -> total)
connected on the device (runtime.connect), beside the same stages relayed by a host actor (the
way examples/pipeline.py worked before routes: receive_many from one stage, send each message
to the next). Both on the CPU backend, in one run, the same messages in and out.

    python benchmarks/bench_pipeline.py [--messages N] [--requests N] [--rounds N]

(a) throughput: N RawData of 8 values of mixed priorities sent with one send_array into clip
while total's answers are collected with receive_array (the relay moves message objects, as the
example did);
(b) latency of one request at a time through the three stages:
`request("clip", raw, reply_from="total")` when connected; send to clip and receive from total
when relayed (a relay cannot keep the conversation: the next stage answers the relayed copy).
Rounds alternate between the two so that a change in the machine's load hits both. (c) where
the time goes: the CPU time per message of each stage's runner process and of the host.
Targets (issue 12): connected >= 5x the relayed throughput and >= 3x lower p50.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import generated.pipeline as pkg  # noqa: E402
from ringgen import ActorContext, KernelStateError, RingKernelRuntime  # noqa: E402

STAGES = ("clip", "square", "total")


async def relay(ctx: ActorContext) -> None:
    """The host relay: stage i's answers become stage i + 1's requests, one send each."""

    async def hop(src: str, dst: str) -> None:
        while not ctx.should_terminate:
            try:
                batch = await ctx.runtime.receive_many(src, 256, timeout=0.1)
            except KernelStateError:  # the stage was terminated: nothing more will come
                return
            for msg in batch:
                await ctx.runtime.send(dst, msg)

    await asyncio.gather(hop("clip", "square"), hop("square", "total"))


async def start(rt: RingKernelRuntime, mode: str) -> None:
    for stage in reversed(STAGES):
        await rt.launch(stage)
    if mode == "connected":
        await rt.connect("clip", "square")
        await rt.connect("square", "total")
    else:
        await rt.launch("relay", actor=relay)


def raw(i: int) -> Any:
    return pkg.RawData(values=[float(i % 1000)] * 8, priority=(i * 37) % 256)


def raw_rows(n: int) -> np.ndarray:
    rows = np.zeros(n, dtype=pkg.DTYPES["RawData"])
    rows["values"]["count"] = 8
    rows["values"]["items"][:, :8] = (np.arange(n) % 1000)[:, None]
    rows["priority"] = (np.arange(n) * 37) % 256
    return rows


async def throughput(rt: RingKernelRuntime, n: int) -> float:
    """Struct arrays in at clip and out of total in both modes (no Python object per message
    there), so what differs is only how the stages are joined."""
    rows = raw_rows(n)

    async def collect() -> int:
        got = 0
        while got < n:
            batch = await rt.receive_array("total", n - got, timeout=30.0)
            if not len(batch):
                raise TimeoutError(f"only {got} of {n} came out of the pipeline")
            assert (batch["count"] == 8).all()
            got += len(batch)
        return got

    t0 = time.perf_counter()
    _, got = await asyncio.gather(rt.send_array("clip", rows), collect())
    elapsed = time.perf_counter() - t0
    assert got == n
    return n / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def profiled_throughput(rt: RingKernelRuntime, n: int) -> tuple[float, dict[str, float]]:
    """throughput(), and where the CPU went: microseconds per message in each stage's runner
    process and in this (the host's) process. On a machine with fewer free cores than
    processes, the wall time per message follows their sum."""
    pids = {k: rt.channel(k).kernel.proc.pid for k in STAGES}  # type: ignore[attr-defined]
    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    host = time.process_time()
    rate = await throughput(rt, n)
    used = {k: (cpu_seconds(pid) - before[k]) / n * 1e6 for k, pid in pids.items()}
    used["host"] = (time.process_time() - host) / n * 1e6
    return rate, used


async def latencies(rt: RingKernelRuntime, mode: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        msg = raw(i)
        t0 = time.perf_counter()
        if mode == "connected":
            answer = await rt.request("clip", msg, timeout=10.0, reply_from="total")
            assert answer.correlation_id == msg.message_id
        else:
            await rt.send("clip", msg)
            answer = await rt.receive("total", timeout=10.0)
        out.append((time.perf_counter() - t0) * 1e6)
        assert answer.count == 8
    return out


async def in_mode(mode: str, body: Callable[[RingKernelRuntime], Awaitable[Any]]) -> Any:
    async with RingKernelRuntime(pkg, backend="cpu") as rt:
        await start(rt, mode)
        await throughput(rt, 2000)  # warm: first wake-ups, allocations
        return await body(rt)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def main(messages: int, requests: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {"connected": [], "relayed": []}
    lat: dict[str, list[float]] = {"connected": [], "relayed": []}
    cpu: dict[str, list[dict[str, float]]] = {"connected": [], "relayed": []}
    for _ in range(rounds):
        for mode in ("relayed", "connected"):
            rate, used = await in_mode(mode, lambda rt: profiled_throughput(rt, messages))
            rates[mode].append(rate)
            cpu[mode].append(used)
            lat[mode] += await in_mode(mode, lambda rt, m=mode: latencies(rt, m, requests))
    print(f"3-stage pipeline on the CPU backend, {rounds} round(s) of {messages} messages and "
          f"{requests} single requests per mode")
    for mode in ("relayed", "connected"):
        print(f"  {mode:9}  throughput {statistics.median(rates[mode]) / 1e3:8.1f} k msg/s   "
              f"request p50 {pct(lat[mode], 50):7.1f} us   p99 {pct(lat[mode], 99):8.1f} us")
    print("  CPU microseconds per message (median of the rounds), by process:")
    for mode in ("relayed", "connected"):
        parts = {k: statistics.median(u[k] for u in cpu[mode]) for k in cpu[mode][0]}
        print(f"  {mode:9}  " + "  ".join(f"{k} {v:5.1f}" for k, v in parts.items())
              + f"  = {sum(parts.values()):5.1f}")
    speed = statistics.median(rates["connected"]) / statistics.median(rates["relayed"])
    p50 = pct(lat["relayed"], 50) / pct(lat["connected"], 50)
    print(f"  connected vs relayed: {speed:.2f}x the throughput (target >= 5x), "
          f"{p50:.2f}x lower p50 (target >= 3x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.requests, args.rounds))
