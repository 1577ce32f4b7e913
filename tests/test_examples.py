"""The seed's examples end to end: the bundled example packages (generated/) on every backend
this machine has, checked against their Python reference semantics."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from conftest import generated_package

from ringgen import KernelFaultError, KernelState, RingKernelRuntime
from ringgen.verify import ReferenceContext


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
    want = pkg.calculator(pkg.CalculateRequest(expression=expression))
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

    async def body(rt: RingKernelRuntime) -> dict[str, list[int]]:
        for sub in ("sub1", "sub2", "sub3"):
            await rt.launch(sub)
        await rt.launch("topic_processor")
        events = ["update", "price 42.0", "é"]
        for text in events:
            await rt.send("topic_processor", pkg.Event(data=text))
        return {sub: sorted(d.length for d in [await rt.receive(sub, timeout=5.0)
                                               for _ in events])
                for sub in ("sub1", "sub2", "sub3")}

    got = run(pkg, backend, body)
    assert got == {s: [2, 6, 10] for s in ("sub1", "sub2", "sub3")}


def test_pipeline_three_stages(backend: str) -> None:
    pkg: Any = generated_package("pipeline")
    inputs = [pkg.RawData(values=[1.0, 2.0, 3.0]), pkg.RawData(values=[5000.0, -2.0]),
              pkg.RawData(values=[0.1 * i for i in range(64)], priority=250)]

    async def body(rt: RingKernelRuntime) -> dict[Any, Any]:
        for stage in ("stage3", "stage2", "relay", "stage1"):
            await rt.launch(stage)
        for raw in inputs:
            ack = await rt.request("stage1", raw, timeout=5.0)
            assert ack.accepted == len(raw.values)
        totals = [await rt.receive("stage3", timeout=5.0) for _ in inputs]
        return {t.origin: t for t in totals}

    got = run(pkg, backend, body)
    for raw in inputs:  # each stage's reference, composed
        limit = pkg.package.modules[0].LIMIT
        clipped = [min(max(v, -limit), limit) for v in raw.values]
        squares = pkg.stage2(pkg.Clipped(origin=raw.message_id, values=clipped))
        want = pkg.stage3(squares)
        assert got[raw.message_id].energy == want.energy
        assert got[raw.message_id].count == want.count


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
    for name in ("worker", "calculator", "logger", "pubsub", "pipeline", "errors",
                 "cluster_pipeline"):
        assert f"== {name}:" in out.stdout
    assert "Traceback" not in out.stderr
