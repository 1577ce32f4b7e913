"""Ring kernels on the CPU backend through the low-level API: the generated sources compile,
handlers agree with their Python reference, lanes keep priority, the lifecycle is acknowledged,
crashes are contained, and the protocol holds up under ThreadSanitizer; each test that launches
one of schemas.kernels' kernels runs at every granularity (per="block" | "warp" | "thread": the
others from schemas.kernels_per)."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, compile_cpp, compile_nvcc_each, each_at_once, have_nvcc, shared_package
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringgen.codecs import struct_columns as structs
from ringgen.errors import CompileError, KernelStateError
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import RingKernel
from ringgen.runtime.backends.cpu import CpuKernel
from ringgen.toolchain.compile import cccl_include, templates_dir

PERS = ["block", "warp", "thread"]


@pytest.fixture(scope="session")
def per_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The kernels of schemas.kernels at warp and at thread granularity."""
    return shared_package("schemas.kernels_per", "kernels_per", tmp_path_factory)


@dataclass(frozen=True)
class Per:
    """A granularity, and the package that holds the kernels of the tests at it."""

    per: str
    pkg: Any

    def kid(self, name: str) -> str:
        """The id of schemas.kernels' kernel `name` at this granularity."""
        return name if self.per == "block" else f"{name}_{self.per}"


@pytest.fixture(params=PERS)
def per(request: pytest.FixtureRequest, kernels_pkg: Any, per_pkg: Any) -> Per:
    return Per(request.param, kernels_pkg if request.param == "block" else per_pkg)


def _kernel_sources(*packages: Any) -> list[Path]:
    generated = sorted((ROOT / "generated").glob("*/*.cu"))
    return generated + [cu for p in packages for cu in sorted(p.package.path.glob("*.cu"))]


def test_every_kernel_compiles_with_gpp_werror(kernels_pkg: Any, per_pkg: Any, tmp_path: Path) -> None:
    each_at_once(lambda source: compile_cpp([source], tmp_path / f"{source.parent.name}_{source.stem}.o",
                                            [source.parent, cccl_include()], ["-x", "c++", "-c"]),
                 _kernel_sources(kernels_pkg, per_pkg))


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_every_kernel_compiles_with_nvcc_sm90(kernels_pkg: Any, per_pkg: Any, tmp_path: Path) -> None:
    compile_nvcc_each(list(_kernel_sources(kernels_pkg, per_pkg)), tmp_path)


def _send(kernel: RingKernel, msgs: list[Any], lane: int | None = None, block: int = 0) -> None:
    for msg in msgs:
        arr = structs.pack(kernel.info.input, kernel.info.in_dtype, [msg])
        target = rings.LANE_OF[msg.priority] if lane is None else lane
        assert kernel.push(block, target, arr) == 1


def _receive(kernel: RingKernel, count: int, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        arr = kernel.pop(count - len(out), timeout=deadline - time.monotonic())
        assert kernel.info.output is not None
        out += structs.unpack(kernel.info.output, arr)
    assert len(out) == count, f"{len(out)} of {count} responses"
    return out


@pytest.fixture
def launch(kernels_pkg: Any) -> Iterator[Any]:
    started: list[CpuKernel] = []

    def start(kernel_id: str, package: Any = None, activate: bool = True) -> CpuKernel:
        k = CpuKernel((package or kernels_pkg).package.kernel(kernel_id))
        started.append(k)
        if activate:
            k.activate()
        return k

    yield start
    for k in started:
        k.terminate()


# The kernel each test run by hypothesis launched, by granularity: one for all its examples.
_started_for_examples: dict[str, dict[str, CpuKernel]] = {}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_stats_handler_agrees_with_python_reference(launch: Any, per: Per,
                                                   data: st.DataObject) -> None:
    started = _started_for_examples.setdefault("stats", {})
    kernel = started.get(per.per)
    if kernel is None or kernel.closed:  # one kernel for every example of a granularity
        kernel = started[per.per] = launch(per.kid("stats"), per.pkg)
    # values whose sum fits int64, so that C's wrap-around and Python's big ints agree
    numbers = st.builds(per.pkg.Numbers, values=st.lists(st.integers(-(2**50), 2**50), max_size=100),
                        priority=st.integers(0, 255))
    requests = data.draw(st.lists(numbers, min_size=1, max_size=8))
    _send(kernel, requests)
    responses = _receive(kernel, len(requests))
    by_request = {r.correlation_id: r for r in responses}
    for req in requests:
        got, want = by_request[req.message_id], getattr(per.pkg, per.kid("stats"))(req)
        assert (got.total, got.maximum, got.count) == (want.total, want.maximum, want.count)
        assert got.priority == req.priority and got.message_id.version == 4


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.floats(-1e6, 1e6), max_size=256), min_size=1, max_size=6))
def test_worker_example_agrees_with_python_reference(launch: Any, worker_pkg: Any,
                                                     batches: list[list[float]]) -> None:
    kernel = getattr(test_worker_example_agrees_with_python_reference, "kernel", None)
    if kernel is None or kernel.closed:
        kernel = launch("worker", worker_pkg)
        test_worker_example_agrees_with_python_reference.kernel = kernel  # type: ignore[attr-defined]
    requests = [worker_pkg.WorkRequest(data=d) for d in batches]
    _send(kernel, requests)
    for req, resp in zip(requests, _receive(kernel, len(requests)), strict=True):
        assert resp.correlation_id == req.message_id
        want = worker_pkg.worker(req).result  # the block sums in another order: near, not equal
        assert math.isclose(resp.result, want, rel_tol=1e-12, abs_tol=1e-6 * len(req.data))
        assert resp.success is True and resp.error_code == 0  # the response's field defaults


def test_urgent_message_overtakes_a_backlog(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("echo"), per.pkg, activate=False)
    backlog = [per.pkg.Ping(seq=i, priority=10) for i in range(40)]
    _send(kernel, backlog)
    _send(kernel, [per.pkg.Ping(seq=999, priority=255)])
    assert kernel.status()[0].processed == 0
    kernel.activate()
    order = [p.seq for p in _receive(kernel, 41)]
    assert order[0] == 999 and order[1:] == list(range(40))


def test_lanes_are_polled_highest_first(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("echo"), per.pkg, activate=False)
    priorities = [0, 63, 64, 127, 128, 129, 191, 192, 255]
    _send(kernel, [per.pkg.Ping(seq=p, priority=p) for p in priorities])
    kernel.activate()
    seen = [p.seq for p in _receive(kernel, len(priorities))]
    lanes = [rings.LANE_OF[p] for p in seen]
    assert lanes == sorted(lanes, reverse=True)
    assert seen == [192, 255, 129, 191, 128, 64, 127, 0, 63]  # FIFO within a lane


@pytest.mark.serial  # terminate within 1 s
def test_lifecycle_is_acknowledged_and_pause_pops_nothing(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("echo"), per.pkg)
    assert kernel.status()[0].state == rings.STATE_ACTIVE
    kernel.deactivate()
    assert kernel.status()[0].state == rings.STATE_PAUSED
    _send(kernel, [per.pkg.Ping(seq=i) for i in range(5)])
    time.sleep(0.2)
    assert kernel.status()[0].processed == 0 and kernel.lane_size(0, 2) == 5
    assert len(kernel.pop(10, timeout=0.05)) == 0
    kernel.activate()
    assert [p.seq for p in _receive(kernel, 5)] == list(range(5))
    beat = kernel.status()[0].heartbeat
    # Alive while idle: an idle block naps up to RG_MAX_IDLE_NS (1 s on the CPU) between beats.
    deadline = time.monotonic() + 3.0
    while kernel.status()[0].heartbeat == beat and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kernel.status()[0].heartbeat > beat
    start = time.monotonic()
    kernel.terminate()
    assert time.monotonic() - start < 1.0
    assert kernel.proc.returncode == 0 and kernel.failure() is None


def test_several_blocks_share_the_work(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("echo4"), per.pkg)
    for block in range(4):
        _send(kernel, [per.pkg.Ping(seq=block * 100 + i) for i in range(10)], block=block)
    responses = _receive(kernel, 40)
    assert sorted(p.seq for p in responses) == sorted(b * 100 + i for b in range(4) for i in range(10))
    assert all(p.block == p.seq // 100 for p in responses)
    assert [s.processed for s in kernel.status()] == [10, 10, 10, 10]


@pytest.mark.parametrize(("mode", "reason"), [
    (1, r"segmentation fault \(SIGSEGV\) in block 0 thread 0 \(the runner process died of SIGSEGV\)"),
    (2, r"abort \(SIGABRT\) in block 0 thread 0"),
    (3, r"__trap\(\) at .*kernels(_per)?\.py:\d+ in block 0 thread 0"),
])
def test_crashing_handler_fails_only_its_kernel(launch: Any, per: Per, mode: int,
                                                reason: str) -> None:
    import re

    crasher, bystander = launch(per.kid("crasher"), per.pkg), launch(per.kid("echo"), per.pkg)
    # One at a time: a crash in a batch holds back the responses of the whole batch.
    _send(crasher, [per.pkg.Ping(seq=1)])
    assert [p.seq for p in _receive(crasher, 1)] == [1]
    _send(crasher, [per.pkg.Ping(seq=2, mode=mode)])
    deadline = time.monotonic() + 5
    while crasher.failure() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    failure = crasher.failure()
    assert failure is not None and re.search(reason, failure), failure
    _send(bystander, [per.pkg.Ping(seq=7)])
    assert [p.seq for p in _receive(bystander, 1)] == [7]


def test_ctx_fail_counts_errors_and_still_answers(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("crasher"), per.pkg)
    _send(kernel, [per.pkg.Ping(seq=1, mode=4), per.pkg.Ping(seq=2)])
    assert [p.seq for p in _receive(kernel, 2)] == [1, 2]
    status = kernel.status()[0]
    assert (status.processed, status.errors, status.emitted) == (2, 1, 2)


def test_host_module_refuses_misuse_instead_of_touching_memory(launch: Any, kernels_pkg: Any) -> None:
    kernel = launch("echo")
    size = kernel.info.in_dtype.itemsize
    with pytest.raises(TypeError, match=f"whole structs of {size} bytes"):
        kernel.push(0, 2, bytes(size + 1))
    with pytest.raises(IndexError, match="no lane 5 of block 0"):
        kernel.push(0, 5, bytes(size))
    with pytest.raises(IndexError, match="no lane 0 of block 1"):
        kernel.lane_size(1, 0)
    rows = structs.pack(kernel.info.input, kernel.info.in_dtype, [kernels_pkg.Ping(seq=i) for i in range(3)])
    with pytest.raises(TypeError, match="contiguous"):
        kernel.push(0, 2, rows[::2])
    assert kernel.push(0, 2, rows) == 3 and len(_receive(kernel, 3)) == 3
    kernel.terminate()
    with pytest.raises(ValueError, match="region was released"):
        kernel.rings.lane_size(0, 0)


def test_fire_and_forget_kernel(launch: Any, per: Per) -> None:
    kernel = launch(per.kid("sink"), per.pkg)
    _send(kernel, [per.pkg.Ping(seq=i) for i in range(20)])
    deadline = time.monotonic() + 5
    while kernel.status()[0].processed < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert kernel.status()[0].processed == 20 and kernel.status()[0].emitted == 0
    with pytest.raises(KernelStateError, match="fire-and-forget"):
        kernel.pop(1)


def test_handler_compile_error_points_at_the_users_line(tmp_path: Path) -> None:
    from conftest import build_package

    from ringgen.toolchain.compile import compile_runner

    module = tmp_path / "broken_kernel.py"
    module.write_text(
        "from dataclasses import dataclass\n"
        "from ringgen import message, ring_kernel\n"
        "@message\n@dataclass\nclass Req:\n    x: int = 0\n"
        "CU = r'''\n"
        "__device__ bool broken_handle(const Req& req, Req& resp, rg_ctx& ctx) {\n"
        "    return undefined_name + 1;\n"
        "}\n"
        "'''\n"
        "@ring_kernel(kernel_id='broken', input=Req, output=Req, cuda=CU)\n"
        "def broken(req: Req) -> Req: ...\n")
    pkg: Any = build_package(str(module), tmp_path / "gen")
    with pytest.raises(CompileError, match=r"broken_kernel\.py:9:\d+: error: .*undefined_name"):
        compile_runner(pkg.package.path, "broken")


def test_ring_protocol_under_thread_sanitizer(per: Per, tmp_path: Path) -> None:
    """A million messages, four blocks, all five lanes: none lost or duplicated, FIFO per lane,
    every response correlated; the kernel loop and rg_host.h in one process, TSan clean. Then
    the event loop's wake-up protocol (armed / notified / eventfd), with the kernel and with a
    watcher thread writing the eventfd: a lost wake-up fails it (it did for a clear_notify that
    reset `notified` before reading the eventfd). At warp and thread granularity (batched pops
    and pushes by other threads than thread 0 on a GPU, groups side by side), the futex run
    alone, shorter: the wake-up protocol does not depend on the granularity."""
    binary = tmp_path / "ring_stress"
    package, kid = per.pkg.package.path, per.kid("echo4")
    compile_cpp([ROOT / "tests" / "native" / "ring_stress.cpp", templates_dir() / "rg_cpu_runtime.cpp"],
                binary, [package, templates_dir(), cccl_include()],
                ["-fsanitize=thread", "-pthread", f"-DRG_KERNEL_CU=\"{package / (kid + '.cu')}\"",
                 f"-DRG_ENTRY={kid}_ring_kernel", "-Wno-error"])
    # The consumer waits on the futex, then as an event loop on an eventfd that the kernel
    # writes (CPU backend) or a watcher thread writes (CUDA backend).
    runs = ((("1000000", "futex"), ("200000", "eventfd"), ("200000", "watch")) if per.per == "block"
            else (("200000", "futex"),))
    for messages, mode in runs:
        result = subprocess.run([str(binary), messages, mode], capture_output=True, text=True,
                                timeout=300, env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
        assert "ThreadSanitizer" not in result.stderr, (mode, result.stderr[-4000:])
        assert result.returncode == 0, (mode, result.stderr[-4000:])
        assert result.stdout.strip() == f"OK {messages}", mode
