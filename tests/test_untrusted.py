"""A host that trusts nothing it shares: a kernel that writes over its own region (a handler bug)
fails that kernel with KernelFaultError, or goes on working, and never harms the Python process;
launch parameters and arrays are checked before they reach a kernel.

The region tests run the runtime in a child process: on a host that follows what the kernel
wrote, the failure is a segfault of the process that runs them."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, build_package
from schemas import scribbler as sc

from ringgen import RingKernelRuntime, UnifiedBuffer, ValidationError
from ringgen.codecs import struct_columns as structs
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.cpu import CpuKernel

TESTS = ROOT / "tests"


@pytest.fixture(scope="module")
def scribbler_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.scribbler", tmp_path_factory.mktemp("scribbler") / "gen")


def run_child(pkg: Any, body: str, timeout: float = 120) -> Any:
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
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=timeout, cwd=TESTS)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the child hung for {timeout} s:\n{e.stderr!r:.4000}") from None
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
            t = rt.telemetry("scribbler")
            return [error, rt.state("scribbler").name, later, other, t.sent, t.in_flight]
    """, timeout=60)
    error, state, later, other, sent, in_flight = outcome
    assert "'scribbler'" in error and "output ring" in error and "wrote over its region" in error
    assert (state, later, other) == ("FAILED", "refused", 7)
    # the request went into its lane before the pop found the fault: it was sent, and it is
    # not in flight any more (the failure accounted for it)
    assert (sent, in_flight) == (1, 0)


def test_the_host_writes_no_file_descriptor_the_kernel_names(scribbler_pkg: Any) -> None:
    """The doorbell's eventfd number lives in the region; the host once wrote to whatever
    descriptor the kernel put there (with the bell armed), here a pipe of the host process."""
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


def test_the_host_attends_by_its_own_layout(scribbler_pkg: Any) -> None:
    """Every host write the blocks must look at (a command, a snapshot request, new links)
    bumps each block's `attention`; the host once found those words by the region's grid,
    rings offset and strides, which the kernel wrote here (a grid of 0xFFFFFFF0, offsets of
    2^40: a segfault), and rang the doorbell's eventfd, which the kernel named here (a pipe of
    the host's process). The kernel read its layout at launch and goes on answering, through
    deactivate/activate, a snapshot of its state and a connect/disconnect."""
    outcome = run_child(scribbler_pkg, f"""
        import os
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("ledger")
            await rt.launch("sink")
            seqs = []
            for target, value in (({sc.DOORBELL_FD}, write_end + 1), ({sc.LAYOUT}, 1 << 40)):
                request = pkg.Scribble(seq=len(seqs) + 1, target=target, value=value)
                seqs.append((await rt.request("ledger", request, timeout=5)).seq)
            await rt.deactivate("ledger")
            await rt.activate("ledger")
            seqs.append((await rt.request("ledger", pkg.Scribble(seq=3), timeout=5)).seq)
            counts = [state.count for state in await rt.read_state("ledger")]
            await rt.connect("ledger", "sink")
            await rt.disconnect("ledger")
            seqs.append((await rt.request("ledger", pkg.Scribble(seq=4), timeout=5)).seq)
            states = [rt.state(k).name for k in ("ledger", "sink")]
        try:
            written = len(os.read(read_end, 64))
        except BlockingIOError:
            written = 0
        return [seqs, counts, states, written]
    """, timeout=60)
    assert outcome == [[1, 2, 3, 4], [3], ["ACTIVE", "ACTIVE"], 0]


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


# -- launch parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 3, 48, 1000, -64, 1 << 30])
def test_lane_capacity_must_be_a_power_of_two_in_range(scribbler_pkg: Any, capacity: int) -> None:
    """A lane capacity that is not a power of two once corrupted the rings (the slot mask
    wraps wrong: duplicates and losses) or crashed; it is refused where it is given."""
    with pytest.raises(ValidationError, match="lane_capacity must be a power of two"):
        RingKernelRuntime(scribbler_pkg, backend="cpu", lane_capacity=capacity)
    with pytest.raises(ValidationError, match="out_capacity must be a power of two"):
        CpuKernel(scribbler_pkg.package.kernel("scribbler"), out_capacity=capacity)

    async def launch() -> None:
        async with RingKernelRuntime(scribbler_pkg, backend="cpu") as rt:
            await rt.launch("scribbler", lane_capacity=capacity)

    with pytest.raises(ValidationError, match="lane_capacity must be a power of two"):
        asyncio.run(launch())


@pytest.mark.parametrize("size", [0, -1, 2.5, "8"])
def test_queue_size_is_checked(scribbler_pkg: Any, size: Any) -> None:
    async def launch() -> None:
        async with RingKernelRuntime(scribbler_pkg, backend="cpu") as rt:
            await rt.launch("scribbler", queue_size=size)

    with pytest.raises(ValidationError, match="queue_size must be"):
        asyncio.run(launch())


def test_the_native_region_refuses_a_capacity_its_mask_cannot_index() -> None:
    """The native layer holds the same rule for callers that bypass Python's checks."""
    memory = bytearray(1 << 20)
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    with pytest.raises(ValueError, match="powers of two"):
        rings.region_type()(address, 1, 32, 48, 64, 64, 64, 0)


def test_a_route_written_over_faults_instead_of_draining_what_it_cannot_hold() -> None:
    """Both kernels of a route map it and may write anywhere in it. The host, draining it for a
    target that is gone, reads its own copy of the layout and bounds each ring's indices: a
    tail 5 past the head of a ring of 4 once drained 5 messages (one of them twice), and a
    route header with other grids sent it off the route's end."""
    line = int(re.findall(r"#define RG_LINE (\d+)", (ROOT / "templates" / "rg_ring.h").read_text())[0])
    route_type = rings.route_type()
    memory = bytearray(route_type.size(1, 1, 4, 16))
    anchor = ctypes.c_char.from_buffer(memory)
    route = route_type(ctypes.addressof(anchor), 1, 1, 4, 16)
    memory[16:24] = (1000).to_bytes(4, "little") * 2  # the header's src_grid, dst_grid
    # The header line and the senders' bell line, then ring (0, 0, lane 0): its head, its tail.
    tail = 3 * line
    memory[tail:tail + 8] = (2).to_bytes(8, "little")
    assert len(route.drain()) == 2 * 16 and route.queued() == 0
    memory[tail:tail + 8] = (2 + 5).to_bytes(8, "little")
    with pytest.raises(rings.region_fault(), match="a kernel wrote over the route"):
        route.drain()
    del route, anchor


def test_ring_constants_are_the_headers(scribbler_pkg: Any) -> None:
    """The protocol's constants are defined once, in rg_ring.h; Python reads the module's."""
    header = (ROOT / "templates" / "rg_ring.h").read_text()
    defined = dict(re.findall(r"#define RG_(\w+) (\d+)u?\b", header))
    for name in ("LANES", "MAX_BUFFERS", "CMD_ACTIVATE", "CMD_DEACTIVATE", "CMD_TERMINATE",
                 "STATE_LAUNCHED", "STATE_ACTIVE", "STATE_PAUSED", "STATE_TERMINATED"):
        assert getattr(rings, name) == int(defined[name]), name
    assert rings.LANE_OF[63:66] == (0, 1, 1) and rings.LANE_OF[127:130] == (1, 2, 3)
    assert rings.LANE_OF[191:193] == (3, 4) and len(rings.LANE_OF) == 256


# -- arrays and buffer references ----------------------------------------------------------


def _numbers_rows(kernels_pkg: Any, n: int) -> np.ndarray:
    dtype = kernels_pkg.package.kernel("stats").in_dtype
    return structs.pack(kernels_pkg.Numbers, dtype,
                        [kernels_pkg.Numbers(values=[i, i + 1]) for i in range(n)])


def test_send_array_rows_are_checked_against_their_bounds(kernels_pkg: Any) -> None:
    """A row with a count of 4e9 in a list of MaxLen(100) once went to the kernel, which read
    past its struct; 2-D, 0-d or mistyped arrays gave raw numpy errors. Each is refused with
    ValidationError before anything is enqueued, and the kernel goes on."""
    async def main() -> list[str]:
        errors = []
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("stats")
            rows = _numbers_rows(kernels_pkg, 8)
            rows["values"]["count"][5] = 4_000_000_000
            bad: list[Any] = [rows, rows.reshape(2, 4), rows[:1].reshape(()),
                              np.zeros(4, dtype=[("priority", "u1")]),
                              list(_numbers_rows(kernels_pkg, 2))]
            for arr in bad:
                with pytest.raises(ValidationError) as caught:
                    await rt.send_array("stats", arr)
                errors.append(str(caught.value))
            assert rt.telemetry("stats").sent == 0
            good = _numbers_rows(kernels_pkg, 4)
            assert await rt.send_array("stats", good) == 4
            got: list[Any] = []  # receive_many returns what has come once the first has
            while len(got) < 4:
                more = await rt.receive_many("stats", 4 - len(got), timeout=5)
                assert more, f"only {len(got)} of 4 responses came"
                got += more
            assert sorted(r.total for r in got) == [1, 3, 5, 7]
        return errors

    errors = asyncio.run(main())
    assert "Numbers.values: row 5 has a count of 4000000000, over the bound MaxLen(100)" in errors[0]
    assert "1-D array" in errors[1] and "shape (2, 4)" in errors[1]
    assert "1-D array" in errors[2]
    assert "dtype" in errors[3]
    assert "numpy array" in errors[4]


def test_an_unknown_buffer_reference_is_the_projects_error() -> None:
    with pytest.raises(ValidationError, match="no live UnifiedBuffer with id 987654321"):
        UnifiedBuffer.of(987654321)
