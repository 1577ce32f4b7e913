"""Releasing a kernel's region while other threads wait in native code on it (pop, push_wait,
wait_ack, links_acked, state_snapshot drop the GIL): the release wakes them and waits until
they have left the region, so none reads freed memory; each waiter gets a clear error. And
overlapping rewrites of one kernel's links (a disconnect and a connect at once): one at a
time, never while a block may still be copying the version before."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, build_package, compile_cpp

from ringgen import RingKernelRuntime
from ringgen.codecs import struct_columns as structs
from ringgen.errors import KernelStateError
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.cpu import CpuKernel
from ringgen.toolchain.compile import cccl_include, templates_dir

WAIT_S = 30.0  # far longer than a test: a waiter that returns was woken by the release
ROUNDS = 12  # releases per kind of wait, each at a different moment of the wait

Wait = Callable[[CpuKernel], object]


def _ping(kernel: CpuKernel) -> Any:
    pkg = kernel.info.input
    return structs.pack(pkg, kernel.info.in_dtype, [pkg(seq=0, priority=0)])


def _pop(kernel: CpuKernel) -> object:
    return kernel.pop_bytes(1, timeout=WAIT_S)  # nothing is sent: no response comes


def _push_wait(kernel: CpuKernel) -> object:
    kernel.deactivate()  # a paused kernel takes nothing: the lane stays full
    one = _ping(kernel)
    while kernel.push(0, 0, one):
        pass
    return kernel.push_wait(0, 0, one, timeout=WAIT_S)


def _wait_ack(kernel: CpuKernel) -> object:
    # a command no block will ever acknowledge (sequence numbers only grow)
    return kernel.rings.wait_ack(1 << 40, int(WAIT_S * 1e9))


def _links_acked(kernel: CpuKernel) -> object:
    return kernel.rings.links_acked(kernel.links_offset, 1 << 40, int(WAIT_S * 1e9))


WAITS: dict[str, Wait] = {"pop": _pop, "push_wait": _push_wait, "wait_ack": _wait_ack,
                          "links_acked": _links_acked}


def _release_during(kernel: CpuKernel, wait: Wait, release: Callable[[], None],
                    delay_s: float) -> BaseException | None:
    """Runs `wait` in a thread, releases the region `delay_s` after it started; what the
    waiter raised (None if it returned)."""
    outcome: list[BaseException | None] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        try:
            wait(kernel)
            outcome.append(None)
        except BaseException as e:  # the test inspects whatever it was
            outcome.append(e)

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    started.wait()
    time.sleep(delay_s)
    begun = time.monotonic()
    release()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the release did not end the wait"
    # the waiter left within a nap or two of the release, not at its timeout
    assert time.monotonic() - begun < 5.0
    return outcome[0]


@pytest.mark.parametrize("how", ["terminate", "release"])
@pytest.mark.parametrize("kind", sorted(WAITS))
def test_release_ends_every_native_wait_cleanly(kernels_pkg: Any, kind: str, how: str) -> None:
    rng = random.Random(f"{kind}-{how}")
    released = rings.region_released()
    for _ in range(ROUNDS):
        kernel = CpuKernel(kernels_pkg.package.kernel("echo"))
        try:
            kernel.activate()
            release = (kernel.release if how == "release"
                       else lambda k=kernel: k.terminate(0.5))
            error = _release_during(kernel, WAITS[kind], release, rng.uniform(0, 0.004))
        finally:
            _end(kernel)
        # through RingKernel: KernelStateError; straight on the Region: RegionReleased
        assert isinstance(error, (KernelStateError, released)), repr(error)
        assert "released" in str(error)


def _end(kernel: CpuKernel) -> None:
    """Terminates the kernel; one whose region was released first (release() alone leaves
    the runner process going) is killed: no command reaches it any more."""
    if not kernel.closed:
        kernel.terminate(0.5)
    elif kernel.proc.poll() is None:
        kernel.proc.kill()
        kernel.proc.wait()


@pytest.fixture(scope="module")
def stateful_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.stateful", tmp_path_factory.mktemp("stateful") / "gen")


def _stop_process(pid: int) -> None:
    """SIGSTOP, returning once every thread of the process is stopped (kill() returns before)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 5.0
    while not all((t / "stat").read_text().rsplit(")", 1)[1].split()[0] in "tT"
                  for t in tasks.iterdir()):
        assert time.monotonic() < deadline, "the runner did not stop"
        time.sleep(0.001)


@pytest.mark.parametrize("how", ["terminate", "release"])
def test_release_ends_a_state_snapshot_wait(stateful_pkg: Any, how: str) -> None:
    """A snapshot waits for blocks that, stopped, never answer: the release ends it."""
    rng = random.Random(how)
    for _ in range(ROUNDS // 2):
        kernel = CpuKernel(stateful_pkg.package.kernel("tally"))
        try:
            kernel.activate()
            _stop_process(kernel.proc.pid)  # no block answers from here on
            release = (kernel.release if how == "release"
                       else lambda k=kernel: k.terminate(0.2))  # killed: it acks nothing
            error = _release_during(kernel, lambda k: k.read_state(WAIT_S), release,
                                    rng.uniform(0, 0.004))
        finally:
            kernel.proc.kill()
            _end(kernel)
        assert isinstance(error, KernelStateError) and "released" in str(error), repr(error)


def test_calls_after_release_raise_region_released(kernels_pkg: Any) -> None:
    kernel = CpuKernel(kernels_pkg.package.kernel("echo"))
    kernel.activate()
    region = kernel.rings
    kernel.terminate(0.5)
    released = rings.region_released()
    for call in (lambda: region.pop(1, 10**9, 10**6, 0, False), lambda: region.status(),
                 lambda: region.wait_ack(1, 10**9), lambda: region.command(1),
                 lambda: region.links_acked(kernel.links_offset, 1, 10**9)):
        with pytest.raises(released, match="released"):
            call()
    with pytest.raises(KernelStateError, match="released"):
        kernel.pop_bytes(1, timeout=1.0)
    region.detach()  # again: nothing left to wait for


def test_concurrent_detach_from_many_threads(kernels_pkg: Any) -> None:
    """Every thread's detach returns once the region is free; none joins the watcher twice."""
    kernel = CpuKernel(kernels_pkg.package.kernel("echo"))
    kernel.activate()
    region = kernel.rings
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            _pop(kernel)
        except KernelStateError as e:
            errors.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.01)
    threads = [threading.Thread(target=region.detach) for _ in range(4)]
    for t in threads:
        t.start()
    for t in [*threads, waiter]:
        t.join(10.0)
        assert not t.is_alive()
    assert len(errors) == 1 and "released" in str(errors[0])
    kernel.release()  # detached already: returns at once
    _end(kernel)


def test_concurrent_terminates_all_return(kernels_pkg: Any) -> None:
    """A terminate whose acknowledgement wait another thread's terminate released returns
    as the other does: the kernel is terminated either way."""
    for _ in range(ROUNDS):
        kernel = CpuKernel(kernels_pkg.package.kernel("echo"))
        kernel.activate()
        errors: list[BaseException] = []

        def terminate(k: CpuKernel = kernel, errors: list[BaseException] = errors) -> None:
            try:
                k.terminate(0.5)
            except BaseException as e:  # the test reports any
                errors.append(e)

        threads = [threading.Thread(target=terminate) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)
            assert not t.is_alive()
        assert errors == [] and kernel.closed and kernel.exited()


def test_release_under_thread_sanitizer(tmp_path: Path) -> None:
    """rg_host.h's release protocol alone, TSan clean: 400 regions released while a thread
    waits in each native wait, then unmapped at once (a wait that read on would fault), some
    waiters refused for coming after the release began (tests/native/release_stress.cpp)."""
    binary = tmp_path / "release_stress"
    compile_cpp([ROOT / "tests" / "native" / "release_stress.cpp"], binary,
                [templates_dir(), cccl_include()], ["-fsanitize=thread", "-pthread"])
    result = subprocess.run([str(binary), "400"], capture_output=True, text=True, timeout=300,
                            env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
    rounds, ended, refused = map(int, result.stdout.split()[1:])
    assert rounds == 400 and ended + refused == 4 * 400 and ended > 0


@pytest.fixture(scope="module")
def routed_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.routed", tmp_path_factory.mktemp("routed") / "gen")


class SlowAcks:
    """A kernel's Region whose blocks look slow to apply new links: each version published
    reads as unacknowledged for its first `late` looks, which widens the window in which an
    overlapping rewrite would write the table. Records every set_link made while a published
    version was not yet acknowledged."""

    def __init__(self, region: Any, late: int = 30):
        self.region, self.late = region, late
        self.published = self.acked = self.looks = 0
        self.overlaps: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.region, name)

    def set_link(self, *args: Any) -> None:
        if self.published > self.acked:
            self.overlaps.append(self.published)
        self.region.set_link(*args)

    def publish_links(self, links_offset: int) -> int:
        self.published = self.region.publish_links(links_offset)
        self.looks = 0
        return self.published

    def links_acked(self, links_offset: int, version: int, timeout_ns: int) -> bool:
        self.looks += 1
        if self.looks <= self.late or not self.region.links_acked(links_offset, version,
                                                                  timeout_ns):
            return False
        self.acked = max(self.acked, version)
        return True


def test_overlapping_link_rewrites_wait_for_each_other(routed_pkg: Any) -> None:
    pkg = routed_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("a", "b", "c"):
                await rt.launch(k)
            await rt.connect("a", "b")
            kernel = rt.channel("a").kernel  # type: ignore[attr-defined]
            slow = kernel.region = SlowAcks(kernel.region)
            # A disconnect and a connect of a's output at once: both rewrite a's out links.
            await asyncio.gather(rt.disconnect("a"), rt.connect("a", "c"))
            assert slow.overlaps == [], "a table was rewritten while blocks could copy it"
            assert slow.acked == slow.published >= 2  # both published, each applied
            reply = await rt.request("a", pkg.Item(seq=7), timeout=10.0, reply_from="c")
            assert reply.seq == 7 and reply.hops == 2  # the last rewrite is what holds
            kernel.region = slow.region

    asyncio.run(main())
