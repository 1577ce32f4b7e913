"""The batched data path (rg_bus.h, rg_kernel.h): per="block" | "warp" | "thread", batches of
the used bytes only, and the bus meter, on the CPU backend; nvcc sm_90 of every variant."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import build_package, compile_nvcc, have_nvcc, import_package

from ringgen import RingKernelRuntime
from ringgen.codegen.kernels import batch_size
from ringgen.codegen.runs import BUS_LINE, MessageRuns, Prefix, Run, message_runs, slot_lead
from ringgen.errors import DeviceResourceError, SchemaError
from ringgen.schema.kernels import ring_kernel

PERS = ["block", "warp", "thread"]
GROUP_SIZES = {"block": {64}, "warp": {32, 16}, "thread": {1}}  # vec_warp: 80 threads


@pytest.fixture(scope="module")
def bus_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.bus", tmp_path_factory.mktemp("bus") / "gen")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def collect(rt: RingKernelRuntime, kernel_id: str, n: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < n:
        more = await rt.receive_many(kernel_id, n - len(got), timeout=20.0)
        assert more, f"{kernel_id}: {len(got)} of {n} responses"
        got.extend(more)
    return got


@pytest.mark.parametrize("per", PERS)
def test_each_granularity_answers_in_order_with_the_bytes_it_was_sent(bus_pkg: Any, per: str) -> None:
    """Empty and full lists and strings, batches that wrap the lanes' end (capacity 16) and a
    last partial one, mixed priorities: every response is the reference's, each lane's in the
    order of its requests, and the counters add up."""
    from schemas.bus import CAP

    kid = f"vec_{per}"

    def make(i: int) -> Any:
        n = [0, CAP, 1, CAP - 1, 7][i % 5]
        tag = ["", "x" * 12, "héllo", "a"][i % 4]
        return bus_pkg.Vec(seq=i, xs=[float(i + k) for k in range(n)], tag=tag, fail=i % 9 == 0,
                           priority=[128, 200, 10][i % 3])

    sent = [make(i) for i in range(301)]

    async def main() -> None:
        async with RingKernelRuntime(bus_pkg, backend="cpu") as rt:
            await rt.launch(kid, lane_capacity=16)
            await rt.send_many(kid, sent)
            got = await collect(rt, kid, len(sent))
            t = rt.telemetry(kid)
            assert (t.processed, t.errors) == (len(sent), sum(m.fail for m in sent))
            assert t.bus_reads > 0 and t.bus_writes > 0
            by_seq = {r.seq: r for r in got}
            assert sorted(by_seq) == list(range(len(sent)))
            for m in sent:
                r = by_seq[m.seq]
                doubled = [2.0 * x for x in m.xs]
                assert (list(r.xs), r.total, r.tag) == (doubled, sum(doubled), m.tag), (m, r)
                assert r.group_size in GROUP_SIZES[per]
                assert r.correlation_id == m.message_id and r.priority == m.priority
            for prio in (10, 128, 200):  # FIFO per (block, lane)
                seqs = [r.seq for r in got if r.priority == prio]
                assert seqs == sorted(seqs)

    run(main())


@pytest.mark.parametrize("per", PERS)
def test_a_partial_batch_and_requests_without_a_response(bus_pkg: Any, per: str) -> None:
    kid = f"vec_{per}"

    async def main() -> None:
        async with RingKernelRuntime(bus_pkg, backend="cpu") as rt:
            await rt.launch(kid)
            await rt.send_many(kid, [bus_pkg.Vec(seq=-1 - i) for i in range(3)])  # no responses
            await rt.send_many(kid, [bus_pkg.Vec(seq=i, xs=[1.0]) for i in range(3)])
            got = await collect(rt, kid, 3)
            assert [r.seq for r in got] == [0, 1, 2] and all(r.total == 2.0 for r in got)
            await rt.drain(kid, timeout=10.0)
            assert rt.telemetry(kid).processed == 6

    run(main())


def test_the_meter_counts_only_the_bytes_used(bus_pkg: Any) -> None:
    """Short messages read far less than their slot; the baseline build (the whole slot, one
    request a round) reads at least the slot."""
    dtype = bus_pkg.package.kernels["vec_thread"].in_dtype
    n = 256

    async def per_message(baseline: bool) -> float:
        if baseline:
            os.environ["RINGGEN_BUS_BASELINE"] = "1"
        try:
            async with RingKernelRuntime(bus_pkg, backend="cpu") as rt:
                await rt.launch("vec_thread", activate=False)
                await rt.send_many("vec_thread", [bus_pkg.Vec(seq=i, xs=[1.0]) for i in range(n)])
                await rt.activate("vec_thread")
                await collect(rt, "vec_thread", n)
                t = rt.telemetry("vec_thread")
                return t.bus_read_bytes / n
        finally:
            os.environ.pop("RINGGEN_BUS_BASELINE", None)

    used = 88 + 17  # header, seq, count and 4 items; tag and fail
    after, before = run(per_message(False)), run(per_message(True))
    assert before >= dtype.itemsize
    assert after < used + 64, (after, used)  # the rest: the host's indices, once a batch
    assert after < before / 4


def test_runs_are_the_fixed_bytes_then_the_used_prefixes() -> None:
    import schemas.bus

    from ringgen.codegen.reader import read_package

    pkg = read_package("bus", [schemas.bus], ["schemas/bus.py"]).package
    structs = {s.c_name: s for s in pkg.structs}
    runs = message_runs(pkg.message("Vec"), structs)
    # header + seq + xs.count and its first 4 items in one run; then, once the count is known,
    # the items used after the first 4, and the 12-byte tag with its length and `fail`
    assert runs.fixed == (Run(0, 88),)
    assert runs.used == (Prefix(56, "m->xs.count", 8, 40, 4, 48), Run(376, 17))
    assert runs.used_bytes({"m->xs.count": 3}) == 88 + 17
    assert runs.used_bytes({"m->xs.count": 40}) == 88 + 17 + 36 * 8
    # the ring's lead puts the end of the first step on a line boundary; a message without a
    # second step needs none
    assert slot_lead(runs) == 40 and (40 + 88) % BUS_LINE == 0
    assert slot_lead(MessageRuns((Run(0, 60),), ())) == 0


def test_aligned_slots_read_one_line_a_step(bus_pkg: Any) -> None:
    """Vec with one item from slots of whole lines, 40 bytes in: its first step [40, 128) and its
    second, the tag and `fail` [416, 433), are a line each. Polling a backlog is one read a
    round (lane 0's `posted` and `attention` side by side, rg_poll); besides, once, the block's
    indices at start and its first look (the command, the links and the lanes' tails)."""
    n = 256
    k = bus_pkg.package.kernels["vec_thread"]
    assert k.in_lead == 40

    async def go() -> float:
        async with RingKernelRuntime(bus_pkg, backend="cpu") as rt:
            await rt.launch("vec_thread", activate=False, lane_capacity=n)
            await rt.send_many("vec_thread", [bus_pkg.Vec(seq=i, xs=[1.0]) for i in range(n)])
            await rt.activate("vec_thread")
            got = await collect(rt, "vec_thread", n)
            assert [r.seq for r in got] == list(range(n))
            return rt.telemetry("vec_thread").bus_reads / n

    batch = batch_size(k.spec, k.in_dtype.itemsize + k.out_dtype.itemsize)
    reads = run(go())
    assert 2 <= reads <= 2 + 1 / batch + 24 / n, (reads, batch)


@dataclass
class _Tally:
    n: int = 0


def test_batch_sizes_fit_shared_memory_and_per_is_checked() -> None:
    from schemas.bus import Vec, VecOut, vec_block, vec_thread, vec_warp

    assert batch_size(vec_block.__rg_kernel__, 800) == 32
    assert batch_size(vec_block.__rg_kernel__, 2184) == 18  # the worker's: 40 KB of shared memory
    assert batch_size(vec_warp.__rg_kernel__, 800) == 33   # 3 warps, 11 steps
    assert batch_size(vec_thread.__rg_kernel__, 800) == 32  # one step of 32 threads
    for bad in ({"per": "grid"}, {"per": "warp", "block": 64, "batch": 3}, {"batch": 0}):
        with pytest.raises(SchemaError, match=r"per|batch"):
            ring_kernel(kernel_id="k", input=Vec, output=VecOut, cuda="x", **bad)(lambda r: r)
    for per in ("warp", "thread"):  # a Python handler with state= steps it one request at a time
        ring_kernel(kernel_id="k", input=Vec, output=VecOut, per=per)(lambda r: r)
        with pytest.raises(SchemaError, match=r"Python handler with state= runs per='block'"):
            ring_kernel(kernel_id="k", input=Vec, output=VecOut, per=per, state=_Tally)(lambda r, s: r)


# A stats kernel one thread a request (64 threads: one step is 64 requests), over samples of
# `cap` floats: at 256 a step would hold 64 x 2,144 bytes in shared memory.
STATS = '''
from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Samples:
    xs: Annotated[list[float], MaxLen({cap})] = ()


@message
@dataclass
class Stats:
    mean: float = 0.0


CU = r"""
__device__ bool stats_handle(const Samples& req, Stats& resp, rg_ctx& ctx) {{
    double total = 0.0;
    for (uint32_t i = 0; i < req.xs.count; ++i) total += req.xs.items[i];
    resp.mean = req.xs.count ? total / req.xs.count : 0.0;
    return true;
}}
"""


@ring_kernel(kernel_id="stats", input=Samples, output=Stats, block=64, per="thread",{batch}
             cuda=CU)
def stats(req: Samples) -> Stats:
    return Stats(mean=sum(req.xs) / len(req.xs) if req.xs else 0.0)
'''


def _stats_plan(tmp_path: Path, name: str, cap: int, batch: str = "") -> Any:
    from ringgen.codegen.build import plan

    module = tmp_path / f"{name}.py"
    module.write_text(STATS.format(cap=cap, batch=batch))
    return plan([str(module)], tmp_path / f"{name}_gen")


def test_a_step_too_large_for_shared_memory_is_clamped_to_what_fits(tmp_path: Path) -> None:
    """64 requests of 2,096 bytes and their responses are 137 KB: the build takes the 19 that
    fit in the batch's 40 KB, the other 45 threads idle, and every request is answered in order."""
    from ringgen.codegen.writer import write_package

    p = _stats_plan(tmp_path, "stats_clamped", 256)
    assert p.schema.package.kernels[0].batch == 40 * 1024 // (2096 + 48) == 19
    write_package(p.package_dir, p.files())
    pkg: Any = import_package(p.package_dir, "rg_stats_clamped")
    sent = [pkg.Samples(xs=[float(i), float(i + 2)]) for i in range(50)]

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("stats", lane_capacity=16)
            await rt.send_many("stats", sent)
            got = await collect(rt, "stats", len(sent))
            assert [r.correlation_id for r in got] == [m.message_id for m in sent]
            assert [r.mean for r in got] == [i + 1.0 for i in range(len(sent))]

    run(main())


def test_a_batch_over_48_kb_of_shared_memory_is_a_build_error(tmp_path: Path) -> None:
    """Refused by `ringgen build` itself (no nvcc needed), naming the message, its size and the
    fix: a batch= that fits, or, where one request alone does not, a smaller MaxLen."""
    with pytest.raises(DeviceResourceError) as declared:
        _stats_plan(tmp_path, "stats_declared", 256, " batch=64,")
    text = str(declared.value)
    for part in ("'stats'", "64 x (Samples 2,096 + Stats 48) = 137,216 bytes", "49,152",
                 "leave batch= out: 22 request(s) fit", "MaxLen on Samples.xs"):
        assert part in text, (part, text)
    with pytest.raises(DeviceResourceError) as alone:
        _stats_plan(tmp_path, "stats_alone", 20000)
    text = str(alone.value)
    for part in ("1 x (Samples 160,048 + Stats 48)", "a smaller MaxLen on Samples.xs",
                 "160,008 bytes", "BufferRef"):
        assert part in text, (part, text)


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_a_clamped_batch_fits_what_ptxas_reports(tmp_path: Path) -> None:
    from ringgen.codegen.writer import write_package
    from ringgen.toolchain.resources import kernel_resources

    p = _stats_plan(tmp_path, "stats_ptxas", 256)
    write_package(p.package_dir, p.files())
    figures = kernel_resources(p.package_dir, "stats")
    assert not figures.refused and figures.problems(64) == [], figures


@pytest.mark.slow
def test_race_check_finds_no_race_in_batches(bus_pkg: Any) -> None:
    """ThreadSanitizer over batched pops and pushes at warp and thread granularity: only block
    barriers order a block's threads (rg_cpu_runtime.cpp), so a copy or a handler that touched
    what another thread touches between two barriers would be reported."""
    n = int(os.environ.get("RINGGEN_BUS_RACE_MESSAGES", "300"))  # the full soak: 100000

    async def main(kid: str) -> None:
        async with RingKernelRuntime(bus_pkg, backend="cpu") as rt:
            await rt.launch(kid, lane_capacity=32)
            await rt.send_many(kid, [bus_pkg.Vec(seq=i, xs=[1.0] * (i % 41), tag="t" * (i % 13),
                                                 priority=[128, 250][i % 2]) for i in range(n)])
            assert len(await collect(rt, kid, n)) == n

    os.environ["RINGGEN_RACE_CHECK"] = "1"
    try:
        for kid in ("vec_warp", "vec_thread"):
            run(main(kid))
    finally:
        os.environ.pop("RINGGEN_RACE_CHECK", None)


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_every_granularity_compiles_with_nvcc_sm90(bus_pkg: Any, tmp_path: Path) -> None:
    folder = Path(bus_pkg.__file__).parent
    for per in PERS:
        compile_nvcc(folder / f"vec_{per}.cu", tmp_path / f"vec_{per}.cubin", [folder])
