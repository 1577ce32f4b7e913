"""The seed's examples end to end: the bundled example packages (generated/) on every backend
this machine has, checked against their Python reference semantics."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from conftest import generated_package

from ringgen import KernelFaultError, KernelState, RingKernelRuntime
from ringgen.reference import ReferenceContext
from ringgen.runtime.keys import key_hash


def run(pkg: Any, backend: str, body: Any) -> Any:
    async def main() -> Any:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            return await body(rt)

    return asyncio.run(main())


def test_worker_request_response(backend: str) -> None:
    pkg: Any = generated_package("worker")

    async def body(rt: RingKernelRuntime) -> None:
        await rt.launch("worker")
        req = pkg.WorkRequest(data=[1, 2, 3])
        await rt.send("worker", req)
        resp = await rt.receive("worker", timeout=5.0)
        assert resp.correlation_id == req.message_id and resp.result == 6.0
        resp = await rt.request("worker", pkg.WorkRequest(data=[4.0]), timeout=5.0)
        assert resp.result == 4.0 and resp.success is True

    run(pkg, backend, body)


@pytest.mark.parametrize("expression", ["2 + 2", "7 / 2", "-1.5 * 4", "0.1 + 0.2", "10 - 2.25",
                                        "42", "1 / 0", "two + 2", "3 ^ 4", "1 +", "  8 *  -0.5 "])
def test_calculator_agrees_with_its_reference(expression: str, backend: str) -> None:
    pkg: Any = generated_package("calculator")

    async def body(rt: RingKernelRuntime) -> Any:
        await rt.launch("calculator")
        return await rt.request("calculator", pkg.CalculateRequest(expression=expression),
                                timeout=5.0)

    got = run(pkg, backend, body)
    want = pkg.calculator(pkg.CalculateRequest(expression=expression), ReferenceContext())
    assert (got.success, got.error, got.result) == (want.success, want.error, want.result)


def test_logger_fire_and_forget(backend: str) -> None:
    pkg: Any = generated_package("logger")
    module = pkg.package.modules[0]
    module.WRITTEN.clear()

    async def body(rt: RingKernelRuntime) -> None:
        await rt.launch("logger")
        for level, text, priority in (("INFO", "Started", 128), ("DEBUG", "tick", 5),
                                      ("ERROR", "boom", 250)):
            assert await rt.send("logger", pkg.LogEvent(level=level, message=text,
                                                        priority=priority)) is True
        await rt.drain("logger", timeout=5.0)

    run(pkg, backend, body)
    assert sorted(e.message for e in module.WRITTEN) == ["Started", "boom", "tick"]
    assert all(isinstance(e.timestamp, float) for e in module.WRITTEN)


def test_pubsub_every_subscriber_gets_every_event(backend: str) -> None:
    pkg: Any = generated_package("pubsub")
    subscribers = pkg.package.modules[0].SUBSCRIBERS
    events = [pkg.Event(data=text, priority=p) for text, p in
              (("update", 128), ("price 42.0", 250), ("é", 5), ("x" * 32, 128))]

    async def body(rt: RingKernelRuntime) -> dict[str, list[Any]]:
        for sub in subscribers:
            await rt.launch(sub)
        await rt.launch("topic_processor")
        await rt.connect("topic_processor", *subscribers)
        await rt.send_many("topic_processor", events)
        got = {sub: [await rt.receive(sub, timeout=5.0) for _ in events] for sub in subscribers}
        assert await rt.receive_many("topic_processor", 1, timeout=0.05) == []  # all routed
        return got

    got = run(pkg, backend, body)
    by_id = {e.message_id: e for e in events}
    for n, sub in enumerate(subscribers, 1):
        assert sorted(by_id[d.correlation_id].data for d in got[sub]) == sorted(
            e.data for e in events), sub  # every event once, answered as a conversation
        for d in got[sub]:  # what the subscriber's Python reference says, from the event
            want = getattr(pkg, sub)(by_id[d.correlation_id])
            assert (d.subscriber, d.length) == (want.subscriber, want.length) == (
                n, len(by_id[d.correlation_id].data))
            assert d.priority == by_id[d.correlation_id].priority


def test_pipeline_host_stage_then_device_stages(backend: str) -> None:
    pkg: Any = generated_package("pipeline")
    module = pkg.package.modules[0]
    inputs = [pkg.RawData(values=[1.0, 2.0, 3.0]), pkg.RawData(values=[5000.0, -2.0, math.nan]),
              pkg.RawData(values=[0.1 * i for i in range(64)], priority=250)]

    async def body(rt: RingKernelRuntime) -> list[Any]:
        await module.start(rt)
        await rt.launch("stage1")
        results = []
        for raw in inputs:
            results.append(await rt.request("stage1", raw, timeout=5.0, reply_from="total"))
            ack = await rt.receive("stage1", timeout=5.0)
            assert ack.accepted == len(raw.values) and ack.correlation_id == raw.message_id
        for stage in ("clip", "square"):  # nothing came back to the host from the middle
            assert await rt.receive_many(stage, 1, timeout=0.05) == []
        return results

    got = run(pkg, backend, body)
    for raw, result in zip(inputs, got, strict=True):  # each stage's reference, composed
        want = pkg.total(pkg.square(pkg.clip(raw)))
        assert result.correlation_id == raw.message_id
        assert result.count == want.count
        assert result.energy == want.energy or (math.isnan(result.energy) and
                                                math.isnan(want.energy))


def test_sensors_running_statistics_per_key(backend: str) -> None:
    pkg: Any = generated_package("sensors")
    module = pkg.package.modules[0]
    readings = [pkg.Reading(sensor_id=i % 9, value=float((i * 7919) % 101) / 4.0)
                for i in range(900)]

    async def body(rt: RingKernelRuntime) -> tuple[list[Any], list[Any], list[Any]]:
        await rt.launch("running_stats")
        await rt.send_many("running_stats", readings[:450])
        await rt.drain("running_stats", timeout=10.0)
        await rt.deactivate("running_stats")
        middle = await rt.read_state("running_stats")  # paused: the state is kept
        await rt.activate("running_stats")
        await rt.send_many("running_stats", readings[450:])
        answers: list[Any] = []
        while len(answers) < len(readings):
            batch = await rt.receive_many("running_stats", len(readings), timeout=10.0)
            assert batch, f"{len(answers)} of {len(readings)} answered"
            answers += batch
        return middle, await rt.read_state("running_stats"), answers

    middle, final, answers = run(pkg, backend, body)
    # The Python reference, run over each block's readings in order, from the defaults.
    expected: dict[Any, Any] = {}
    for snapshot, upto in ((middle, 450), (final, 900)):
        states = [pkg.RunningStats() for _ in range(module.BLOCKS)]
        for r in readings[:upto]:
            b = key_hash(r.sensor_id) % module.BLOCKS  # the block the key picks
            expected[r.message_id] = (b, pkg.running_stats(r, states[b]))
        assert snapshot == states  # exactly: the same doubles in the same order
    assert len({b for b, _ in expected.values()}) > 1  # the keys spread over the blocks
    for a in answers:
        _, want = expected[a.correlation_id]
        assert (a.sensor_id, a.count, a.mean, a.variance) == (
            want.sensor_id, want.count, want.mean, want.variance)


def test_error_handling(backend: str) -> None:
    pkg: Any = generated_package("errors")

    async def body(rt: RingKernelRuntime) -> None:
        await rt.launch("error_log")
        await rt.launch("safe_sqrt")
        await rt.connect("safe_sqrt.errors", "error_log")
        for value in (16.0, 2.0, -4.0, math.nan):
            got = await rt.request("safe_sqrt", pkg.Measurement(value=value), timeout=5.0)
            ctx = ReferenceContext(pkg.package.kernels["safe_sqrt"].spec)
            want = pkg.safe_sqrt(pkg.Measurement(value=value), ctx)
            assert (got.success, got.error, got.error_code) == (want.success, want.error,
                                                                want.error_code)
            assert got.result == want.result
        assert rt.telemetry("safe_sqrt").errors == 2
        await rt.launch("risky")
        await rt.connect("risky.errors", "error_log")
        codes = [(await rt.request("risky", pkg.Measurement(value=v), timeout=5.0)).error_code
                 for v in (1.0, 2e7, 13.0)]
        assert codes == [None, 400, 500]
        for _ in range(500):  # the error actor got every error report, from both senders
            if rt.telemetry("error_log").processed == 4:
                break
            await asyncio.sleep(0.01)
        assert rt.telemetry("error_log").processed == 4 and not rt.dead_letters
        await rt.launch("fragile")
        with pytest.raises(KernelFaultError, match=r"__trap\(\) at examples/errors\.py:\d+"):
            await rt.request("fragile", pkg.Measurement(value=-1.0), timeout=5.0)
        assert rt.state("fragile") is KernelState.FAILED
        assert (await rt.request("safe_sqrt", pkg.Measurement(value=9.0), timeout=5.0)).result == 3

    run(pkg, backend, body)


def test_the_main_job_runs_every_example() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_examples.py"), "--backend",
                          "cpu"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("worker", "calculator", "logger", "pubsub", "pipeline", "sensors", "errors",
                 "cluster_pipeline"):
        assert f"== {name}:" in out.stdout
    assert "Traceback" not in out.stderr
