"""Where a message over a route goes when its caller or its target changes course: a
request(reply_from=) cancelled by its caller, a target relaunched before the host's drain tick,
a request() to a kernel that answers into a connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import build_package

from ringgen import DeadLetterReason, KernelState, KernelStateError, RingKernelRuntime
from ringgen.runtime import routes


@pytest.fixture(scope="module")
def routed_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.routed", tmp_path_factory.mktemp("routed") / "gen")


async def _until(predicate: Any, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 10 s: {what}")


def test_a_cancelled_reply_from_request_leaves_its_late_reply_a_dead_letter(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("a")
            await rt.launch("b", activate=False)
            await rt.connect("a", "b")
            msg = pkg.Item(seq=7)
            with pytest.raises(asyncio.TimeoutError):  # wait_for cancels the request
                await asyncio.wait_for(rt.request("a", msg, reply_from="b"), 0.3)
            await rt.activate("b")
            await _until(lambda: any(d.reason is DeadLetterReason.LATE_REPLY for d in rt.dead_letters),
                         "the late reply as a dead letter")
            late = [d for d in rt.dead_letters if d.reason is DeadLetterReason.LATE_REPLY]
            assert [d.message.correlation_id for d in late] == [msg.message_id]
            assert await rt.receive_many("b", 10, timeout=0.2) == []  # no one else's receive gets it

    asyncio.run(main())


def test_a_target_relaunched_before_the_drain_tick_leaves_what_it_took_a_dead_letter(
        routed_pkg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """b dies on a routed message; launched again before the host's drain tick (made long
    here; 20 ms in use, a race), the message it took is still a dead letter of its failure."""
    pkg = routed_pkg
    monkeypatch.setattr(routes, "SLOW_DRAIN_PERIOD", 30.0)
    monkeypatch.setattr(routes, "DRAIN_PERIOD", 30.0)

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b", "c"):
                await rt.launch(k)
            await rt.connect("a", "b")
            await rt.connect("b", "c")
            await rt.send("a", pkg.Item(seq=200, tag=-1))  # b traps on tag -1
            await _until(lambda: rt.state("b") is KernelState.FAILED, "b failed")
            await rt.launch("b")
            await rt.send("a", pkg.Item(seq=201))
            assert (await rt.receive("c", timeout=10.0)).seq == 201
            lost = [d for d in rt.dead_letters if getattr(d.message, "seq", None) == 200]
            assert [(d.kernel_id, d.reason) for d in lost] == [("b", DeadLetterReason.KERNEL_FAILED)]

    asyncio.run(main())


def test_a_request_to_a_kernel_that_answers_into_a_connection_is_refused(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b"):
                await rt.launch(k)
            await rt.connect("a", "b")
            with pytest.raises(KernelStateError, match="reply_from"):
                await rt.request("a", pkg.Item(seq=1), timeout=5.0)
            reply = await rt.request("a", pkg.Item(seq=2), timeout=5.0, reply_from="b")
            assert reply.hops == 2
            await rt.disconnect("a")
            assert (await rt.request("a", pkg.Item(seq=3), timeout=5.0)).hops == 1

    asyncio.run(main())
