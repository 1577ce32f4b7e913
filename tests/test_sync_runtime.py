"""SyncRuntime: every seed pattern without `await`, from plain code and from inside a running
event loop (a Jupyter cell), with the async runtime's errors and clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import build_package, generated_package

from ringgen import KernelFaultError, KernelState, KernelStateError, SyncRuntime


def in_both_places(body: Callable[[], None]) -> None:
    """Run `body` as a script would, then as a notebook cell would (a loop running already)."""
    body()

    async def cell() -> None:
        body()  # blocking, as a cell's code does: the runtime's loop is another thread's

    asyncio.run(cell())


def test_request_response_and_fire_and_forget() -> None:
    worker: Any = generated_package("worker")
    calc: Any = generated_package("calculator")

    def body() -> None:
        with SyncRuntime(worker, calc, backend="cpu") as rt:
            rt.launch("worker")
            rt.launch("calculator")
            req = worker.WorkRequest(data=[1, 2, 3])
            assert rt.send("worker", req) is True
            resp = rt.receive("worker", timeout=5.0)
            assert resp.correlation_id == req.message_id and resp.result == 6.0
            assert rt.request("calculator", calc.CalculateRequest(expression="7 / 2"),
                              timeout=5.0).result == 3.5
            many = [worker.WorkRequest(data=[float(i)], priority=i % 256) for i in range(300)]
            assert rt.send_many("worker", many) == 300
            got: list[Any] = []
            while len(got) < 300:
                got += rt.receive_many("worker", 300 - len(got), timeout=5.0)
            assert sorted(r.result for r in got) == [float(i) for i in range(300)]
            assert rt.send_nowait("worker", worker.WorkRequest(data=[2.0])) is True
            rt.drain("worker", timeout=5.0)
            t = rt.telemetry("worker")
            assert (t.sent, t.processed) == (302, 302)

    in_both_places(body)


def test_logger_pubsub_and_pipeline() -> None:
    logger: Any = generated_package("logger")
    pubsub: Any = generated_package("pubsub")
    pipeline: Any = generated_package("pipeline")
    written = logger.package.modules[0].WRITTEN
    subscribers = pubsub.package.modules[0].SUBSCRIBERS

    def body() -> None:
        written.clear()
        with SyncRuntime(logger, pubsub, pipeline, backend="cpu") as rt:
            rt.launch("logger")
            rt.send("logger", logger.LogEvent(level="INFO", message="Started"))
            rt.drain("logger", timeout=5.0)
            assert [e.message for e in written] == ["Started"]

            for sub in subscribers:
                rt.launch(sub)
            rt.launch("topic_processor")
            rt.connect("topic_processor", *subscribers)  # fan-out on the device
            rt.send("topic_processor", pubsub.Event(data="price 42.0"))
            for sub in subscribers:
                assert rt.receive(sub, timeout=5.0).length == len("price 42.0")

            for stage in ("total", "square", "clip", "stage1"):
                rt.launch(stage)
            rt.connect("clip", "square")
            rt.connect("square", "total")
            raw = pipeline.RawData(values=[1.0, 2.0, 3.0])
            assert rt.request("stage1", raw, timeout=5.0, reply_from="total").energy == 14.0
            assert rt.receive("stage1", timeout=5.0).accepted == 3

    in_both_places(body)


def test_errors_are_the_runtimes_and_buffers_work() -> None:
    errors: Any = generated_package("errors")
    large: Any = generated_package("large_data")

    def body() -> None:
        with SyncRuntime(errors, large, backend="cpu") as rt:
            with pytest.raises(KernelStateError, match="not launched"):
                rt.receive("safe_sqrt", timeout=0.1)
            rt.launch("safe_sqrt")
            with pytest.raises(asyncio.TimeoutError):
                rt.receive("safe_sqrt", timeout=0.05)
            rt.launch("fragile")
            with pytest.raises(KernelFaultError, match="fragile"):
                rt.request("fragile", errors.Measurement(value=-1.0), timeout=5.0)
            assert rt.state("fragile") is KernelState.FAILED
            assert rt.request("safe_sqrt", errors.Measurement(value=16.0), timeout=5.0).result == 4.0

            rt.launch("reduce")
            buffer = rt.unified_buffer(10_000, np.float64)
            buffer.host[:] = 1.0
            resp = rt.request("reduce", large.GoodRequest(buffer=buffer.ref, size=10_000),
                              timeout=10.0)
            assert resp.total == 10_000.0

    in_both_places(body)


def runner_pids() -> set[int]:
    """This process's child processes (the CPU backend's runners)."""
    me = str(os.getpid())
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        kids.add(int(entry))
            except OSError:
                continue
    return kids


def test_closing_or_dropping_stops_kernels_and_thread() -> None:
    worker: Any = generated_package("worker")
    before = runner_pids()
    rt = SyncRuntime(worker, backend="cpu")
    rt.launch("worker")
    assert runner_pids() - before
    thread = rt._thread
    rt.close()
    assert not thread.is_alive() and not runner_pids() - before
    with pytest.raises(KernelStateError, match="closed"):
        rt.send("worker", worker.WorkRequest(data=[1.0]))
    rt.close()  # twice is fine

    dropped = SyncRuntime(worker, backend="cpu")
    dropped.launch("worker")
    thread = dropped._thread
    del dropped
    gc.collect()
    assert not thread.is_alive() and not runner_pids() - before


def test_state_is_read_without_await(tmp_path: Path) -> None:
    pkg: Any = build_package("schemas.stateful", tmp_path / "gen")
    with SyncRuntime(pkg, backend="cpu") as rt:
        rt.launch("tally")
        for value in (3, 4, 5):
            rt.request("tally", pkg.Reading(sensor=1, value=value), timeout=5.0)
        (state,) = rt.read_state("tally")
        assert (state.count, state.total) == (3, 12)
