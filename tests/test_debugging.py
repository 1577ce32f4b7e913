"""Debugging a handler on the CPU backend: printf output reaches the host even when the handler
crashes right after it; a failed assert and a fiber stack overflow are named in the kernel's
failure; a debug build says how to attach gdb; the race check finds a data race between the
threads of a block, and none in the bundled examples."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, build_package

from ringgen import KernelFaultError, RingKernelRuntime
from ringgen.codecs import struct_columns as structs
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.cpu import CpuKernel

# A handler that prints from every thread, then fails as its request's `mode` says:
# 1 __trap(), 2 assert(), 3 a recursion deeper than a fiber's stack.
DEBUGGEE = '''
from dataclasses import dataclass
from ringgen import message, ring_kernel

@message
@dataclass
class Job:
    mode: int = 0

CU = r"""
__device__ __noinline__ int deep(int n) {
    volatile char frame[1024];
    frame[0] = (char)n;
    return n > 0 ? deep(n - 1) + frame[0] : 0;
}

__device__ bool debuggee_handle(const Job& req, Job& resp, rg_ctx& ctx) {
    printf("thread %u saw mode %d\\n", threadIdx.x, (int)req.mode);
    __syncthreads();
    if (threadIdx.x == 3) {
        if (req.mode == 1) __trap();
        assert(req.mode != 2);
        if (req.mode == 3) resp.mode = deep(1 << 20);
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
        assert kernel.push(0, rings.LANE_OF[128], arr) == 1
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


def test_stack_overflow_is_reported_as_such(debuggee_pkg: Any) -> None:
    failure = _fail_with(debuggee_pkg, 3)
    assert failure.startswith("fiber stack overflow (SIGSEGV: raise RINGGEN_FIBER_STACK_KB"), failure
    assert "in block 0 thread 3 (the runner process died of SIGSEGV)" in failure, failure


def test_debug_build_says_how_to_attach_gdb(debuggee_pkg: Any, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGGEN_DEBUG", "1")
    kernel = CpuKernel(debuggee_pkg.package.kernel("debuggee"))
    try:
        pid, runner = kernel.proc.pid, kernel.proc.args[0]
        assert kernel.build == "debug"
        assert f"attach a debugger with:  gdb -p {pid} {runner}" in caplog.text, caplog.text
        assert b".debug_info" in Path(runner).read_bytes()  # -g, at -O0: a steppable handler
    finally:
        kernel.terminate()


RACER = '''
from dataclasses import dataclass
from ringgen import message, ring_kernel

@message
@dataclass
class Tick:
    safe: bool = False

@message
@dataclass
class Count:
    n: int = 0

CU = r"""
__device__ bool racer_handle(const Tick& req, Count& resp, rg_ctx& ctx) {
    if (req.safe) atomicAdd((unsigned long long*)&resp.n, 1ull);
    else resp.n += 1;  // every thread of the block, between the same two barriers
    return true;
}
"""

@ring_kernel(kernel_id="racer", input=Tick, output=Count, block=256, cuda=CU)
def racer(req: Tick) -> Count: ...
'''


def test_race_check_finds_a_race_between_threads_of_a_block(tmp_path: Path) -> None:
    (tmp_path / "racer.py").write_text(RACER)
    pkg: Any = build_package(str(tmp_path / "racer.py"), tmp_path / "gen")

    async def count(safe: bool, race_check: bool) -> int:
        async with RingKernelRuntime(pkg, backend="cpu", race_check=race_check) as rt:
            await rt.launch("racer")
            answer = await rt.request("racer", pkg.Tick(safe=safe), timeout=60)
            return int(answer.n)

    # The fibers of a block take turns, so the race gives the right sum without the check...
    assert asyncio.run(count(safe=False, race_check=False)) == 256
    # ...and the check finds it, naming both accesses; the atomic version passes it.
    assert asyncio.run(count(safe=True, race_check=True)) == 256
    with pytest.raises(KernelFaultError) as info:
        asyncio.run(count(safe=False, race_check=True))
    text = str(info.value)
    assert re.search(r"race check: data race \S*racer\.py:\d+ in racer_handle", text), text
    assert re.search(r"Read of size 8 in racer_handle at \S*racer\.py:\d+; Previous write of "
                     r"size 8 in racer_handle at \S*racer\.py:\d+", text), text


@pytest.mark.slow
def test_race_check_finds_no_race_in_the_examples() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_examples.py"), "--backend", "cpu"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "RINGGEN_RACE_CHECK": "1"})
    assert "ThreadSanitizer" not in result.stdout + result.stderr, result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
