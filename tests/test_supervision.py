"""Supervision (launch(restart=...)), lifecycle events (runtime.events()) and per-kernel
watchdog_s, on the CPU backend with real runner processes: each crash mode restarts the kernel
within its budget and gives up past it; redelivery happens exactly once and is flagged; state
defaults and connections come back; a hung handler is found within watchdog_s + 1 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import build_package, compile_nvcc, have_nvcc
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from schemas import supervised as S

from ringgen import (
    DeadLetterReason,
    EventKind,
    KernelFaultError,
    KernelState,
    MetricsCollector,
    RingKernelRuntime,
    SyncRuntime,
)
from ringgen.errors import ValidationError

BACKOFF = 0.05


@pytest.fixture(scope="module")
def sup_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.supervised", tmp_path_factory.mktemp("supervised") / "gen")


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def _crash(rt: RingKernelRuntime, pkg: Any, how: str, seq: int) -> None:
    """Make `sup` fail the way `how` says, with Job `seq` in its hands."""
    modes = {"segfault": S.SEGFAULT, "trap": S.TRAP, "region": S.REGION, "hang": S.HANG,
             "kill": S.SLOW}
    await rt.send("sup", pkg.Job(seq=seq, mode=modes[how]))
    if how == "region":  # the host finds a broken region when it next looks for responses
        with contextlib.suppress(KernelFaultError):
            await rt.receive("sup", timeout=5)
    if how == "kill":
        await asyncio.sleep(0.1)  # it is inside the slow request
        os.kill(rt.channel("sup").kernel.proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["segfault", "trap", "kill", "region", "hang"])
def test_each_crash_mode_restarts_until_the_budget_is_spent(sup_pkg: Any, how: str) -> None:
    async def main() -> tuple[list[Any], list[Any], Any, Any, list[Any]]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            events = rt.events()
            await rt.launch("sup", restart="on_failure", max_restarts=2, within_s=60,
                            backoff_s=BACKOFF, watchdog_s=2.0)
            answers = []
            for round_ in range(3):  # two restarts are within the budget, the third is not
                before = rt.current("sup")
                answers.append(await rt.request("sup", sup_pkg.Job(seq=10 * round_), timeout=10))
                await _crash(rt, sup_pkg, how, 10 * round_ + 1)
                await _until(lambda b=before: rt.current("sup") is not b
                             or (rt.state("sup") is KernelState.FAILED and
                             rt.channel("sup").restart_note.startswith("; not restarted")))
                if round_ < 2:
                    await _until(lambda: rt.state("sup") is KernelState.ACTIVE)
            with pytest.raises(KernelFaultError) as gave_up:
                await rt.request("sup", sup_pkg.Job(seq=99), timeout=10)
            telemetry = rt.telemetry("sup")
            seen = []
            while (event := await events.get(timeout=0)) is not None:
                seen.append(event)
            return answers, seen, gave_up.value, telemetry, list(rt.dead_letters)

    answers, events, gave_up, telemetry, dead = asyncio.run(main())
    # state defaults come back at each restart: the count starts at 100 again
    assert [a.count for a in answers] == [101, 101, 101]
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.LAUNCHED, EventKind.ACTIVATED,
                     EventKind.FAILED, EventKind.RESTARTED,
                     EventKind.FAILED, EventKind.RESTARTED,
                     EventKind.FAILED, EventKind.GAVE_UP]
    assert [e.restarts for e in events if e.kind is EventKind.RESTARTED] == [1, 2]
    assert "max_restarts=2" in (events[-1].reason or "")
    assert "max_restarts=2" in str(gave_up) and "stays FAILED" in str(gave_up)
    assert telemetry.restarts == 2 and telemetry.state == "failed"
    # what it held is a dead letter each time (redeliver=False); in the region case the host
    # may find the broken ring before or after the handler finished its request
    held = [d for d in dead if d.message.seq % 10 == 1]
    if how == "region":
        assert {d.message.seq for d in held} <= {1, 11, 21}
    else:
        assert sorted(d.message.seq for d in held) == [1, 11, 21]
    assert all(d.reason is DeadLetterReason.KERNEL_FAILED for d in held)
    if how == "hang":
        assert all("hung" in (e.reason or "") for e in events if e.kind is EventKind.FAILED)


def test_redelivery_happens_once_flagged_and_the_waiter_gets_the_answer(sup_pkg: Any) -> None:
    async def main() -> tuple[Any, BaseException, list[Any], list[Any], int]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            await rt.launch("sup", restart="on_failure", max_restarts=5, backoff_s=BACKOFF,
                            redeliver=True)
            # crashes the first time only: the redelivered copy is answered, to the same
            # request(); paused meanwhile, so that 20 more wait behind it when it crashes (in a
            # lower lane: a block takes a batch from one lane, and a crash hands back the whole
            # batch flagged, since the host cannot tell which of it a handler saw)
            await rt.deactivate("sup")
            first = asyncio.ensure_future(
                rt.request("sup", sup_pkg.Job(seq=1, mode=S.CRASH_FIRST), timeout=20))
            await asyncio.sleep(0)
            assert await rt.send_many("sup", [sup_pkg.Job(seq=100 + i, priority=0) for i in range(20)]) == 20
            await rt.activate("sup")
            answer = await first
            # crashes every time: redelivered once, then a dead letter, and its request() fails
            with pytest.raises(KernelFaultError) as twice:
                await rt.request("sup", sup_pkg.Job(seq=2, mode=S.ALWAYS_CRASH), timeout=20)
            await _until(lambda: rt.state("sup") is KernelState.ACTIVE)
            await rt.drain("sup", timeout=10)
            got = await rt.receive_many("sup", 1000, timeout=1)
            while more := await rt.receive_many("sup", 1000, timeout=0.2):
                got += more
            return answer, twice.value, got, list(rt.dead_letters), rt.telemetry("sup").restarts

    answer, twice, got, dead, restarts = asyncio.run(main())
    assert answer.seq == 1 and answer.redelivered == 1
    assert "kernel 'sup' failed" in str(twice)
    once = [d for d in dead if d.message.seq == 2]
    assert len(once) == 1 and "redelivered once already" in once[0].detail
    assert once[0].reason is DeadLetterReason.KERNEL_FAILED
    # every message behind them came exactly once, never flagged (no handler had seen them)
    seqs = sorted(r.seq for r in got)
    assert seqs == list(range(100, 120))
    assert not any(r.redelivered for r in got)
    assert not [d for d in dead if d.message.seq >= 100]
    assert restarts == 3  # seq 1 once, seq 2 twice


def test_state_and_connections_come_back_after_a_restart(sup_pkg: Any) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            await rt.launch("relay")
            await rt.launch("sup", restart="on_failure", backoff_s=BACKOFF)
            await rt.launch("sink")
            await rt.connect("relay", "sup")
            await rt.connect("sup", "sink")
            before = [await rt.request("relay", sup_pkg.Job(seq=i), timeout=10, reply_from="sink")
                      for i in range(3)]
            old = rt.current("sup")
            await rt.send("sup", sup_pkg.Job(seq=50, mode=S.SEGFAULT))
            await _until(lambda: rt.current("sup") is not old
                         and rt.state("sup") is KernelState.ACTIVE)
            after = [await rt.request("relay", sup_pkg.Job(seq=i), timeout=10, reply_from="sink")
                     for i in range(10, 13)]
            return before, after

    before, after = asyncio.run(main())
    assert [(r.seq, r.count) for r in before] == [(0, 101), (1, 102), (2, 103)]
    # in over relay's route, out over sink's, and the state back at its defaults
    assert [(r.seq, r.count) for r in after] == [(10, 101), (11, 102), (12, 103)]


@pytest.mark.serial  # found within watchdog_s + 1 s
def test_a_hung_handler_is_found_within_watchdog_s_and_the_rest_keep_running(
        sup_pkg: Any) -> None:
    async def main() -> tuple[BaseException, float, Any, Any, Any]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:  # hang_timeout: 30 s
            await rt.launch("sup", watchdog_s=2.0)
            await rt.launch("relay")
            start = time.monotonic()
            behind = asyncio.ensure_future(rt.request("sup", sup_pkg.Job(seq=2), timeout=20))
            with pytest.raises(KernelFaultError) as hung:
                await rt.request("sup", sup_pkg.Job(seq=1, mode=S.HANG), timeout=20)
            took = time.monotonic() - start
            with pytest.raises(KernelFaultError):  # the request queued behind it fails too
                await behind
            other = await rt.request("relay", sup_pkg.Job(seq=7), timeout=10)
            return hung.value, took, rt.state("sup"), rt.state("relay"), other

    hung, took, sup_state, relay_state, other = asyncio.run(main())
    assert "hung" in str(hung) and "watchdog_s=2" in str(hung)
    assert took < 2.0 + 1.0
    assert sup_state is KernelState.FAILED
    assert relay_state is KernelState.ACTIVE and other.seq == 7


def test_supervision_options_are_checked(sup_pkg: Any) -> None:
    async def main() -> list[str]:
        errors = []
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            for options in ({"restart": "always"}, {"restart": "on_failure", "max_restarts": -1},
                            {"restart": "on_failure", "within_s": 0},
                            {"restart": "on_failure", "backoff_s": -1}, {"redeliver": True},
                            {"watchdog_s": 0.5}):
                with pytest.raises(ValidationError) as e:
                    await rt.launch("sup", **options)
                errors.append(str(e.value))
            assert rt.kernel_ids() == []  # nothing was launched by a refused call
        return errors

    errors = asyncio.run(main())
    for word, text in zip(["restart", "max_restarts", "within_s", "backoff_s", "redeliver",
                           "watchdog_s"], errors, strict=True):
        assert word in text


def test_events_reach_every_consumer_in_order_and_a_slow_one_is_bounded(sup_pkg: Any) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            fast, other, slow = rt.events(), rt.events(), rt.events(capacity=2)
            seen: list[Any] = []

            async def consume() -> None:
                async for event in fast:
                    seen.append(event)
            consumer = asyncio.ensure_future(consume())
            await rt.launch("relay")
            await rt.deactivate("relay")
            await rt.activate("relay")
            await rt.terminate("relay")
        await consumer  # the stream ended with the runtime
        return seen, [e async for e in other], [e async for e in slow]

    seen, other, slow = asyncio.run(main())
    order = [EventKind.LAUNCHED, EventKind.ACTIVATED, EventKind.DEACTIVATED,
             EventKind.ACTIVATED, EventKind.TERMINATED]
    assert [e.kind for e in seen] == order and [e.kind for e in other] == order
    assert all(e.kernel_id == "relay" and e.missed == 0 for e in seen)
    assert [e.kind for e in slow] == order[-2:] and slow[0].missed == 3


def test_sync_runtime_mirrors_events_and_restarts_show_everywhere(sup_pkg: Any) -> None:
    with SyncRuntime(sup_pkg, backend="cpu", monitor=True) as rt:
        events = rt.events()
        rt.launch("sup", restart="on_failure", backoff_s=BACKOFF)
        rt.send("sup", sup_pkg.Job(seq=1, mode=S.SEGFAULT))
        kinds = [events.get(timeout=10) for _ in range(4)]
        assert [e.kind for e in kinds if e is not None] == [
            EventKind.LAUNCHED, EventKind.ACTIVATED, EventKind.FAILED, EventKind.RESTARTED]
        assert rt.request("sup", sup_pkg.Job(seq=2), timeout=10).count == 101
        assert rt.telemetry("sup").restarts == 1
        # ringgen top, as JSON and as its table
        top = [sys.executable, "-m", "ringgen", "top", "--once", "--pid", str(os.getpid())]
        snap = json.loads(subprocess.run([*top, "--json"], capture_output=True, text=True,
                                         timeout=30, check=True).stdout)
        assert [(k["kernel_id"], k["restarts"]) for k in snap["kernels"]] == [("sup", 1)]
        table = subprocess.run(top, capture_output=True, text=True, timeout=30,
                               check=True).stdout.splitlines()
        assert table[0].split()[-1] == "restarts" and table[1].split()[-1] == "1"
        # Prometheus
        registry = CollectorRegistry()
        registry.register(MetricsCollector(rt))
        text = generate_latest(registry).decode()
        (restarts,) = [s for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "ringgen_restarts_total"]
        assert restarts.labels == {"kernel": "sup", "backend": "cpu"} and restarts.value == 1
    assert [e.kind for e in events] == [EventKind.TERMINATED]


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_a_handler_reading_the_redelivered_flag_compiles_with_nvcc_sm90(sup_pkg: Any,
                                                                        tmp_path: Any) -> None:
    source = sup_pkg.package.path / "sup.cu"
    compile_nvcc(source, tmp_path / "sup.cubin", [source.parent])


def test_a_lost_device_fails_every_kernel_on_it_and_restarts_none(sup_pkg: Any) -> None:
    """What the runtime does when a kernel's backend reports its device lost (CUDA: a hung or
    faulted kernel, runtime/backends/cuda.py; no GPU here, so the CPU kernel's device_lost()
    is made to report it, and the runtime's handling is what runs for real)."""
    async def main() -> tuple[list[Any], dict[str, Any], str]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            events = rt.events()
            for kernel_id in ("relay", "sup", "sink"):
                await rt.launch(kernel_id, restart="on_failure", backoff_s=BACKOFF)
            kernel = rt.channel("sup").kernel
            kernel.device_lost = lambda: "kernel 'sup' hung on the device"  # type: ignore[method-assign]
            os.kill(kernel.proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            await _until(lambda: all(rt.state(k) is KernelState.FAILED
                                     for k in ("relay", "sup", "sink")))
            await asyncio.sleep(5 * BACKOFF)  # no restart comes
            with pytest.raises(KernelFaultError) as e:
                await rt.request("relay", sup_pkg.Job(seq=1))
            seen = []
            while (event := await events.get(timeout=0)) is not None:
                seen.append(event)
            return seen, {k: rt.state(k) for k in ("relay", "sup", "sink")}, str(e.value)

    seen, states, error = asyncio.run(main())
    assert "its device is lost: kernel 'sup' hung on the device" in error
    assert all(state is KernelState.FAILED for state in states.values())
    gave_up = [e for e in seen if e.kind is EventKind.GAVE_UP]
    assert sorted(e.kernel_id for e in gave_up) == ["relay", "sink", "sup"]
    assert all("restart the process" in str(e.reason) for e in gave_up)
    assert not [e for e in seen if e.kind is EventKind.RESTARTED]


def test_a_host_actor_that_raises_is_restarted_too(sup_pkg: Any) -> None:
    async def flaky(ctx: Any) -> None:
        while (msg := await ctx.receive()) is not None:
            if msg.mode == S.SEGFAULT:
                raise RuntimeError(f"cannot take job {msg.seq}")
            await ctx.send(msg.reply(sup_pkg.Result, seq=msg.seq))

    async def main() -> tuple[BaseException, Any, list[Any], list[Any]]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            events = rt.events()
            await rt.launch("flaky", actor=flaky, restart="on_failure", backoff_s=BACKOFF)
            with pytest.raises(KernelFaultError) as failed:
                await rt.request("flaky", sup_pkg.Job(seq=1, mode=S.SEGFAULT), timeout=5)
            await _until(lambda: rt.state("flaky") is KernelState.ACTIVE)
            answer = await rt.request("flaky", sup_pkg.Job(seq=2), timeout=5)
            seen = []
            while (event := await events.get(timeout=0)) is not None:
                seen.append(event.kind)
            return failed.value, answer, seen, list(rt.dead_letters)

    failed, answer, seen, dead = asyncio.run(main())
    assert "cannot take job 1" in str(failed) and "restarts in" in str(failed)
    assert answer.seq == 2
    assert seen == [EventKind.LAUNCHED, EventKind.ACTIVATED, EventKind.FAILED,
                    EventKind.RESTARTED]
    assert [d.message.seq for d in dead] == [1]


def test_terminate_during_the_backoff_calls_the_restart_off(sup_pkg: Any) -> None:
    async def main() -> tuple[Any, list[Any]]:
        async with RingKernelRuntime(sup_pkg, backend="cpu") as rt:
            events = rt.events()
            await rt.launch("sup", restart="on_failure", backoff_s=0.3)
            await rt.send("sup", sup_pkg.Job(seq=1, mode=S.SEGFAULT))
            await _until(lambda: rt.state("sup") is KernelState.FAILED)
            await rt.terminate("sup")
            await asyncio.sleep(0.6)
            kinds = []
            while (event := await events.get(timeout=0)) is not None:
                kinds.append(event.kind)
            return rt.state("sup"), kinds

    state, kinds = asyncio.run(main())
    assert state is KernelState.TERMINATED
    assert kinds == [EventKind.LAUNCHED, EventKind.ACTIVATED, EventKind.FAILED,
                     EventKind.TERMINATED]
