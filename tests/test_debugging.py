"""Debugging a handler on the CPU backend: printf output reaches the host even when the handler
crashes right after it, and a failed assert is named, with its place, in the kernel's failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import build_package

from ringgen.codecs import struct_columns as structs
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.cpu import CpuKernel

# A handler that prints from every thread, then fails as its request's `mode` says:
# 1 __trap(), 2 assert().
DEBUGGEE = '''
from dataclasses import dataclass
from ringgen import message, ring_kernel

@message
@dataclass
class Job:
    mode: int = 0

CU = r"""
__device__ bool debuggee_handle(const Job& req, Job& resp, rg_ctx& ctx) {
    printf("thread %u saw mode %d\\n", threadIdx.x, (int)req.mode);
    __syncthreads();
    if (threadIdx.x == 3) {
        if (req.mode == 1) __trap();
        assert(req.mode != 2);
    }
    return true;
}
"""

@ring_kernel(kernel_id="debuggee", input=Job, output=Job, block=8, cuda=CU)
def debuggee(req: Job) -> Job: ...
'''


@pytest.fixture(scope="module")
def debuggee_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("debuggee")
    (folder / "debuggee.py").write_text(DEBUGGEE)
    return build_package(str(folder / "debuggee.py"), folder / "gen")


def _fail_with(pkg: Any, mode: int) -> str:
    """Launches the kernel (in the test itself: capfd captures from the call on, and the runner
    writes to the stdout it started with) and sends it a request that fails it."""
    kernel = CpuKernel(pkg.package.kernel("debuggee"))
    try:
        kernel.activate()
        arr = structs.pack(pkg.Job, kernel.info.in_dtype, [pkg.Job(mode=mode)])
        assert kernel.push(0, rings.lane_of(128), arr) == 1
        deadline = time.monotonic() + 10
        while kernel.failure() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        failure = kernel.failure()
    finally:
        kernel.terminate()
    assert failure is not None, "the kernel did not fail"
    return failure


def test_printf_output_survives_a_trap_right_after_it(debuggee_pkg: Any,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    # The runner's stdout is capfd's file, not a terminal: fully buffered stdio would have lost
    # all eight lines in the abort.
    failure = _fail_with(debuggee_pkg, 1)
    assert "__trap() at" in failure and "block 0 thread 3" in failure, failure
    out = capfd.readouterr().out
    assert sorted(line for line in out.splitlines() if line.startswith("thread ")) == [
        f"thread {t} saw mode 1" for t in range(8)], out


def test_failed_assert_names_its_expression_and_place(debuggee_pkg: Any,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    failure = _fail_with(debuggee_pkg, 2)
    assert "assert(req.mode != 2) failed at " in failure, failure
    assert f"{Path('debuggee.py')}:" in failure and "debuggee_handle" in failure, failure
    assert "abort (SIGABRT) in block 0 thread 3" in failure, failure
    assert "thread 0 saw mode 2" in capfd.readouterr().out
