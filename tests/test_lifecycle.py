"""Resources and lifecycle: nothing outlives the process that made it (runners, shared memory),
one launch per kernel id, freed buffers leave the runners, and a hung kernel is found and
failed instead of waited on forever. CPU backend: runner processes are real processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, build_package

from ringgen import KernelFaultError, KernelState, KernelStateError, RingKernelRuntime
from ringgen.errors import ValidationError
from ringgen.runtime.buffers import UnifiedBuffer

SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def lifecycle_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.lifecycle", tmp_path_factory.mktemp("lifecycle") / "gen")


def _tagged(tag: str) -> list[int]:
    """Processes whose environment holds RINGGEN_TEST_TAG=tag (runners inherit it)."""
    needle = f"RINGGEN_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _shm_files() -> set[str]:
    return {p.name for p in SHM.glob("ringgen-*")} if SHM.is_dir() else set()


def _in_use(names: set[str]) -> set[str]:
    """Those of the /dev/shm files `names` that a live process maps or holds open (another
    test run's on this machine, say): what is left over is what nobody can free any more."""
    used = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "maps").read_text()
            held = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        used |= {n for n in names if n in text or any(h.endswith("/" + n) for h in held)}
    return used


def _children_runners() -> set[int]:
    """Runner processes whose parent is this process."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = stat.rsplit(")", 1)[1].split()[1]
            if ppid == me and os.readlink(entry / "exe").endswith(".runner"):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _wait_until_gone(tag: str, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


CHILD = """
import asyncio, sys
sys.path.insert(0, {tests!r})
import numpy as np
from pathlib import Path
from conftest import import_package
from ringgen import RingKernelRuntime

pkg = import_package(Path({package!r}), "rg_lifecycle_child")

async def main():
    async with RingKernelRuntime(pkg, backend="cpu") as rt:
        buffers = [rt.unified_buffer(1 << 18, np.float64) for _ in range(4 if {steady!r} else 0)]
        for k in range(1000):
            if k == 1:  # warm: from here on a cycle is the launch and the terminate only
                print("launching", flush=True)
            await rt.launch("hang")
            if {steady!r}:
                for b in buffers:
                    await rt.request("hang", pkg.Job(seq=k, buffer=b.ref), timeout=30.0)
                print("ready", flush=True)
                await asyncio.sleep(3600)
            await rt.terminate("hang")

asyncio.run(main())
"""


def _kill_child_at(lifecycle_pkg: Any, steady: bool, seed: int) -> tuple[list[int], set[str]]:
    """Run a runtime in a child process, SIGKILL it (during a launch, or once it runs with
    buffers in use); return the tagged processes left and the new files in /dev/shm."""
    tag = uuid.uuid4().hex
    before = _shm_files()
    code = CHILD.format(tests=str(ROOT / "tests"), package=str(Path(lifecycle_pkg.__file__).parent),
                        steady=steady)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "RINGGEN_TEST_TAG": tag})
    try:
        assert child.stdout is not None
        want = "ready" if steady else "launching"
        while (line := child.stdout.readline()) and line.strip() != want:
            pass
        assert line, f"the child ended before {want!r} (status {child.wait()})"
        if not steady:  # somewhere in the launch/terminate cycle, often mid-launch
            time.sleep(random.Random(seed).uniform(0.0, 0.3))
    finally:
        child.kill()
        child.wait()
    runners = _wait_until_gone(tag)
    new = _shm_files() - before
    # Files another test process (an xdist worker beside this one) created and freed between
    # the listing and the look at who uses them are gone by now, not left over.
    return runners, {n for n in new - _in_use(new) if (SHM / n).exists()}


def _warm_cache(lifecycle_pkg: Any) -> None:
    """Compile the runner once here, so that the child's launches do not compile."""
    async def main() -> None:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu") as rt:
            await rt.launch("hang")

    asyncio.run(main())


def test_parent_killed_during_launch_leaves_no_runner_and_no_shared_memory(
        lifecycle_pkg: Any) -> None:
    _warm_cache(lifecycle_pkg)
    for seed in range(6):
        runners, files = _kill_child_at(lifecycle_pkg, steady=False, seed=seed)
        for pid in runners:
            os.kill(pid, signal.SIGKILL)
        for name in files:
            (SHM / name).unlink(missing_ok=True)
        assert not runners and not files, f"kill {seed}: orphan runners {runners}, files {files}"


def test_parent_killed_in_steady_state_leaves_no_runner_and_no_buffer_files(
        lifecycle_pkg: Any) -> None:
    _warm_cache(lifecycle_pkg)
    for seed in range(2):
        runners, files = _kill_child_at(lifecycle_pkg, steady=True, seed=seed)
        for pid in runners:
            os.kill(pid, signal.SIGKILL)
        for name in files:
            (SHM / name).unlink(missing_ok=True)
        assert not runners and not files, f"kill {seed}: orphan runners {runners}, files {files}"


def test_concurrent_launches_of_one_kernel_id_refuse_the_second(lifecycle_pkg: Any) -> None:
    before = _children_runners()

    async def main() -> list[Any]:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu") as rt:
            results = await asyncio.gather(rt.launch("hang"), rt.launch("hang"),
                                           return_exceptions=True)
            resp = await rt.request("hang", lifecycle_pkg.Job(seq=3), timeout=10.0)
            assert resp.seq == 3
            return results

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], KernelStateError), results
    assert "being launched" in str(errors[0])
    assert _children_runners() - before == set()


def test_shutdown_during_a_launch_leaves_no_runner(lifecycle_pkg: Any) -> None:
    before = _children_runners()

    async def main() -> BaseException | None:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu") as rt:
            launch = asyncio.ensure_future(rt.launch("hang"))
            await asyncio.sleep(0)  # the launch is under way
        try:
            await launch
        except KernelStateError as e:
            return e
        return None

    error = asyncio.run(main())
    assert error is not None and "shut down" in str(error)
    assert _children_runners() - before == set()


def _child_pids() -> set[int]:
    """This process's children, from each thread's list (cheaper than a scan of /proc)."""
    return {int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()}


def test_cancelled_launch_leaves_no_runner(lifecycle_pkg: Any) -> None:
    _warm_cache(lifecycle_pkg)
    before = _children_runners()

    async def main() -> set[int]:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu") as rt:
            others = _child_pids()
            launch = asyncio.ensure_future(rt.launch("hang"))
            while not _child_pids() - others and not launch.done():
                await asyncio.sleep(0)  # until the worker thread has started the runner
            launch.cancel()  # while the launch waits for the runner to come up
            await asyncio.gather(launch, return_exceptions=True)
        # Looked at before asyncio.run ends: its worker threads' exit would kill the runners
        # they started (their death signal), hiding one that nothing owns.
        deadline = time.monotonic() + 3.0
        while (left := _children_runners() - before) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return left

    assert asyncio.run(main()) == set()


def _runner_maps(pid: int) -> list[str]:
    return [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if "ringgen-buffer" in line]


def test_runner_unmaps_a_buffer_the_host_freed(lifecycle_pkg: Any) -> None:
    async def main() -> tuple[int, int, int]:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu") as rt:
            await rt.launch("hang")
            pid = rt.channel("hang").kernel.proc.pid  # type: ignore[attr-defined]
            buffers = [rt.unified_buffer(1 << 19, np.float64) for _ in range(3)]  # 4 MiB each
            for i, b in enumerate(buffers):
                b.host[0] = i + 0.5
                resp = await rt.request("hang", lifecycle_pkg.Job(seq=i, buffer=b.ref), 10.0)
                assert resp.first == i + 0.5
            mapped = len(_runner_maps(pid))
            for b in buffers[:2]:
                rt.unregister(b)
            del b, buffers[:2]
            deadline = time.monotonic() + 5.0
            while len(_runner_maps(pid)) > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            kept = len(_runner_maps(pid))
            resp = await rt.request("hang", lifecycle_pkg.Job(seq=9, buffer=buffers[0].ref), 10.0)
            assert resp.first == 2.5  # the one still registered is still reachable
            return mapped, kept, len(_runner_maps(pid))

    mapped, kept, last = asyncio.run(main())
    assert (mapped, kept, last) == (3, 1, 1)


def test_buffer_ids_are_random_64_bit() -> None:
    ids = [UnifiedBuffer(1, np.uint8).buffer_id for _ in range(64)]
    assert len(set(ids)) == 64 and 0 not in ids
    assert not any(b - a == 1 for a, b in itertools.pairwise(ids))
    assert max(ids) >= 2**48  # drawn from the whole 64-bit range


@pytest.mark.serial  # hang detection within its timeout
@pytest.mark.parametrize("mode", [1, 2], ids=["endless-handler", "stuck-at-barrier"])
def test_hung_kernel_fails_its_waiters(lifecycle_pkg: Any, mode: int) -> None:
    async def main() -> tuple[BaseException, BaseException, float, Any, int | None, list[Any]]:
        async with RingKernelRuntime(lifecycle_pkg, backend="cpu", hang_timeout=2.0) as rt:
            await rt.launch("hang")
            proc = rt.channel("hang").kernel.proc  # type: ignore[attr-defined]
            start = time.monotonic()
            req = asyncio.ensure_future(rt.request("hang", lifecycle_pkg.Job(seq=1, mode=mode)))
            await asyncio.sleep(0.05)
            behind = [lifecycle_pkg.Job(seq=2 + i) for i in range(3)]
            for msg in behind:  # queued behind the hung one: never taken
                await rt.send("hang", msg)
            drain = asyncio.ensure_future(rt.drain("hang"))
            # bounded here only so that a failing run ends: request() and drain() have none
            done, _ = await asyncio.wait([req, drain], timeout=20.0)
            assert len(done) == 2, "request()/drain() still wait on a hung kernel"
            took = time.monotonic() - start
            req_error, drain_error = req.exception(), drain.exception()
            assert req_error is not None and drain_error is not None
            return (req_error, drain_error, took, rt.state("hang"), proc.poll(),
                    [d.message.seq for d in rt.dead_letters])

    req_error, drain_error, took, state, rc, dead = asyncio.run(main())
    for error in (req_error, drain_error):
        assert isinstance(error, KernelFaultError) and "'hang'" in str(error)
        assert "hung" in str(error)
    assert took < 10.0 and state is KernelState.FAILED
    assert rc == -signal.SIGKILL  # the runner was stopped, not left burning a core
    assert {2, 3, 4} <= set(dead)  # what it never took is a dead letter


def test_stopped_runner_shows_as_stalled(kernels_pkg: Any) -> None:
    async def main() -> tuple[Any, Any, Any, Any]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu", hang_timeout=2.0) as rt:
            await rt.launch("echo")
            await asyncio.sleep(0.5)
            running = rt.telemetry("echo")
            pid = rt.channel("echo").kernel.proc.pid  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(3.0)
                stopped = rt.telemetry("echo")
            finally:
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.5)
            resumed = rt.telemetry("echo")
            resp = await rt.request("echo", kernels_pkg.Ping(seq=5), timeout=10.0)
            return running, stopped, resumed, resp

    running, stopped, resumed, resp = asyncio.run(main())
    assert not running.stalled and running.heartbeat_age_s is not None
    assert stopped.stalled and stopped.heartbeat_age_s >= 2.0
    assert stopped.state == "active"  # it held nothing: shown, not killed
    assert not resumed.stalled and resp.seq == 5


def test_hang_timeout_is_validated(kernels_pkg: Any) -> None:
    with pytest.raises(ValidationError, match="hang_timeout"):
        RingKernelRuntime(kernels_pkg, hang_timeout=0.5)
