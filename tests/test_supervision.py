"""Supervision (launch(restart=...)), lifecycle events (runtime.events()) and per-kernel
watchdog_s, on the CPU backend with real runner processes: each crash mode restarts the kernel
within its budget and gives up past it; redelivery happens exactly once and is flagged; state
defaults and connections come back; a hung handler is found within watchdog_s + 1 s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import pytest
from conftest import build_package
from schemas import supervised as S

from ringgen import (
    DeadLetterReason,
    EventKind,
    KernelFaultError,
    KernelState,
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
                             or rt.state("sup") is KernelState.FAILED and
                             rt.channel("sup").restart_note.startswith("; not restarted"))
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
    # what it held is a dead letter each time (redeliver=False); the region case had finished
    # its request (the write over its output ring came after), so it held none
    held = [d for d in dead if d.message.seq % 10 == 1]
    assert sorted(d.message.seq for d in held) == ([] if how == "region" else [1, 11, 21])
    assert all(d.reason is DeadLetterReason.KERNEL_FAILED for d in held)
    if how == "hang":
        assert all("hung" in (e.reason or "") for e in events if e.kind is EventKind.FAILED)
