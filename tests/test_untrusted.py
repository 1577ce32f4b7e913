"""A host that trusts nothing it shares: a kernel that writes over its own region (a handler bug)
fails that kernel with KernelFaultError, or goes on working, and never harms the Python process;
launch parameters and arrays are checked before they reach a kernel.

The region tests run the runtime in a child process: on a host that follows what the kernel
wrote, the failure is a segfault of the process that runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import ROOT, build_package
from schemas import scribbler as sc

from ringgen import RingKernelRuntime

TESTS = ROOT / "tests"


@pytest.fixture(scope="module")
def scribbler_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.scribbler", tmp_path_factory.mktemp("scribbler") / "gen")


def run_child(pkg: Any, body: str, timeout: float = 240) -> Any:
    """Runs `body` (the inside of `async def main(pkg)`, returning something JSON) in a child
    Python with the scribbler package imported; returns what main returned. A child that dies
    (a segfault) fails the test with its exit status and output."""
    script = (
        "import asyncio, json, sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from pathlib import Path\n"
        "from conftest import import_package\n"
        "from ringgen import KernelFaultError, KernelState, RingKernelRuntime\n"
        "from ringgen.runtime.backends.cpu import CpuKernel\n"
        "from schemas import scribbler as sc\n"
        f"pkg = import_package(Path({str(pkg.package.path)!r}), 'rg_child_scribbler')\n"
        "async def main(pkg):\n" + textwrap.indent(textwrap.dedent(body), "    ") +
        "\nprint('RESULT ' + json.dumps(asyncio.run(main(pkg))))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout, cwd=TESTS)
    assert result.returncode == 0, (f"the Python process died (status {result.returncode}):\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_a_scribbled_grid_is_not_read_back(scribbler_pkg: Any) -> None:
    """The region's grid, overwritten by the kernel, once made the host walk thousands of
    blocks past the end of the region (a segfault). The host keeps the layout it computed:
    the kernel, which never reads the grid itself, goes on answering."""
    answers = run_child(scribbler_pkg, f"""
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("scribbler")
            first = await rt.request("scribbler", pkg.Scribble(seq=1, target={sc.GRID},
                                                               value=0xFFFFFFF0), timeout=5)
            rest = [(await rt.request("scribbler", pkg.Scribble(seq=i), timeout=5)).seq
                    for i in range(2, 22)]
            return [first.seq, *rest, rt.state("scribbler").name]
    """)
    assert answers == [*range(1, 22), "ACTIVE"]


def test_an_impossible_output_index_fails_that_kernel_only(scribbler_pkg: Any) -> None:
    """An output tail far ahead of the head once had the host copy thousands of slots out of a
    ring of 1024 (past the region: a segfault, or garbage delivered as responses). It fails
    that kernel with KernelFaultError naming it; the other kernel keeps working."""
    outcome = run_child(scribbler_pkg, f"""
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("scribbler")
            await rt.launch("bystander")
            try:
                await rt.request("scribbler", pkg.Scribble(seq=1, target={sc.OUT_TAIL},
                                                           value=1 << 40), timeout=5)
                error = "answered"
            except KernelFaultError as e:
                error = str(e)
            try:
                await rt.send("scribbler", pkg.Scribble(seq=2))
                later = "accepted"
            except KernelFaultError as e:
                later = "refused"
            other = (await rt.request("bystander", pkg.Scribble(seq=7), timeout=5)).seq
            return [error, rt.state("scribbler").name, later, other]
    """)
    error, state, later, other = outcome
    assert "'scribbler'" in error and "output ring" in error and "wrote over its region" in error
    assert (state, later, other) == ("FAILED", "refused", 7)


def test_the_host_writes_no_file_descriptor_the_kernel_names(scribbler_pkg: Any) -> None:
    """The doorbell's eventfd number lives in the region; the host once wrote to whatever
    descriptor the kernel put there, here a pipe of the host process (8 bytes per push)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)

    async def main() -> list[int]:
        async with RingKernelRuntime(scribbler_pkg, backend="cpu") as rt:
            await rt.launch("scribbler")
            seqs = [(await rt.request("scribbler", sc_msg, timeout=5)).seq for sc_msg in (
                scribbler_pkg.Scribble(seq=1, target=sc.DOORBELL_FD, value=write_end + 1),
                *(scribbler_pkg.Scribble(seq=i) for i in range(2, 6)))]
            return seqs

    try:
        assert asyncio.run(main()) == [1, 2, 3, 4, 5]
        with pytest.raises(BlockingIOError):
            os.read(read_end, 64)
    finally:
        os.close(read_end)
        os.close(write_end)


FUZZ_SEEDS = 24  # per target and wake-up path


@pytest.mark.slow
@pytest.mark.parametrize("watcher", [False, True], ids=["kernel-wakes", "watcher-wakes"])
def test_fuzz_a_kernel_scribbling_over_its_region(scribbler_pkg: Any, watcher: bool) -> None:
    """Random bytes and words over the region, its layout lines and the block's ring headers,
    for many seeds, with the kernel writing the eventfd (CPU) or a host watcher thread reading
    the rings to write it (as on CUDA): the Python process survives every run, and each
    scribbling kernel is failed with KernelFaultError naming it or goes on answering."""
    outcomes = run_child(scribbler_pkg, f"""
        CpuKernel.kernel_writes_notify = {not watcher}
        counts = {{"failed": 0, "working": 0, "stalled": []}}
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for target in ({sc.RANDOM_REGION}, {sc.RANDOM_LAYOUT}, {sc.RANDOM_RINGS}):
                for seed in range(1, {FUZZ_SEEDS} + 1):
                    await rt.launch("scribbler")
                    outcome = "working"
                    try:
                        await rt.request("scribbler", pkg.Scribble(seq=0, target=target,
                                                                   value=seed), timeout=2)
                        for i in range(1, 4):
                            r = await rt.request("scribbler", pkg.Scribble(seq=i), timeout=2)
                            assert r.seq == i, (r.seq, i)
                    except KernelFaultError as e:
                        assert "'scribbler'" in str(e), e
                        outcome = "failed"
                    except asyncio.TimeoutError:
                        outcome = "failed" if rt.state("scribbler") is KernelState.FAILED else \\
                            "stalled"
                    if outcome == "stalled":
                        counts["stalled"].append([target, seed])
                    else:
                        counts[outcome] += 1
                    try:
                        await rt.terminate("scribbler", timeout=0.5)
                    except KernelFaultError:
                        pass
        return counts
    """)
    total = outcomes["failed"] + outcomes["working"] + len(outcomes["stalled"])
    assert total == 3 * FUZZ_SEEDS
    print(outcomes)
    assert not outcomes["stalled"], outcomes
