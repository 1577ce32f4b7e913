"""Handlers written in Python: the translator's errors, Python's meaning in the compiled C
(checked on the CPU backend against the Python function), #line, and the C compilers."""

from __future__ import annotations

import math
import re
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, compile_cpp, compile_nvcc, generated_package, have_nvcc, import_package

from ringgen.codegen.build import plan
from ringgen.codegen.writer import write_package
from ringgen.errors import TranslationError
from ringgen.runtime.buffers import UnifiedBuffer
from ringgen.runtime.sync import SyncRuntime
from ringgen.schema.kernels import kernel_spec
from ringgen.toolchain.compile import cccl_include
from ringgen.verify import (
    CompiledKernel,
    Outcome,
    agree,
    run_python,
    state_differences,
    verify_kernel,
)

CORPUS = ROOT / "tests" / "golden" / "translated" / "translated"

HEADER = '''\
from __future__ import annotations
import math
from dataclasses import dataclass
from typing import Annotated
import ringgen as rg
from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class In:
    x: int = 0
    y: float = 0.0
    xs: Annotated[list[float], MaxLen(8)] = ()
    s: Annotated[str, MaxLen(8)] = ""


@message
@dataclass
class Out:
    v: int = 0
    w: float = 0.0
    items: Annotated[list[int], MaxLen(4)] = ()


@ring_kernel(kernel_id="bad", input=In, output=Out)
def bad(req, ctx):
    t = 0
    acc = 0.0
'''
BODY_LINE = HEADER.count("\n") + 1  # the file line of the first snippet line


def _build(tmp_path: Path, body: str) -> None:
    path = tmp_path / f"bad_{abs(hash(body))}.py"
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(body), "    ") + "    return None\n")
    plan([str(path)], tmp_path / "out")


# (snippet, its line and column of the problem (1-based, within the snippet), the construct as
# the error names it, a word of what to write instead)
UNSUPPORTED = {
    "try": ("try:\n    t = 1\nexcept Exception:\n    pass\n", 1, 5, "try/except", "if/while/for"),
    "with": ("with open('x') as f:\n    pass\n", 1, 5, "a with statement", "if/while/for"),
    "list literal": ("t = [1, 2]\n", 1, 9, "a list literal", "if/while/for"),
    "list comprehension": ("t = [i for i in range(3)]\n", 1, 9, "a list comprehension", "if/while/for"),
    "lambda": ("f = lambda: 1\n", 1, 9, "a lambda", "if/while/for"),
    "f-string": ("t = f'{req.x}'\n", 1, 9, "an f-string", "if/while/for"),
    "dict": ("t = {1: 2}\n", 1, 9, "a dict literal", "if/while/for"),
    "nested def": ("def g():\n    return 1\n", 1, 5, "a nested function", "if/while/for"),
    "raise": ("raise ValueError('no')\n", 1, 5, "raise", "if/while/for"),
    "bit operator": ("t = req.x & 3\n", 1, 9, "the operator `&`", "bit operations"),
    "type change": ("t = 1.5\n", 1, 9, "a float value for `t` of type int", "0.0"),
    "unknown call": ("t = print(1)\n", 1, 9, "calling `print`", "builtins"),
    "unknown field": ("t = req.nope\n", 1, 9, "the field .nope", "x, y, xs, s"),
    "header field": ("t = req.priority\n", 1, 9, "the field .priority", "header fields"),
    "str local": ("w = req.s\n", 1, 9, "a local of type str", "read the field where it is used"),
    "index a float": ("w = req.y[0]\n", 1, 9, "indexing a float", "bounded list and str"),
    "char against longer str": ("w = req.s[0] < 'ab'\n", 1, 9, "ordering a character against a longer str",
                                "one-character literal"),
    "in a list": ("w = 1.0 in req.xs\n", 1, 9, "`in` of a float in a list[float]", "loop over it"),
    "ord of a str": ("w = ord(req.s)\n", 1, 9, "ord() of a str", "ord(s[i])"),
    "buffer without dtype": ("w = ctx.buffer(req.x)\n", 1, 9, "ctx.buffer() without its dtype",
                             "np.float64"),
    "buffer of an int": ("w = ctx.buffer(req.x, math)\n", 1, 20, "ctx.buffer() of a int", "BufferRef field"),
    "list item store": ("req.xs[0] = 1.0\n", 1, 5, "assigning an item of a list[float]", "immutable"),
    "str with int": ("w = req.s == 1\n", 1, 9, "comparing a str with a int", "str with str"),
    "for else": ("for i in range(3):\n    pass\nelse:\n    pass\n", 1, 5, "for ... else", "flag"),
    "while else": ("while t < 3:\n    t += 1\nelse:\n    pass\n", 1, 5, "while ... else", "flag"),
    "break in prange": ("for i in rg.prange(4):\n    break\n", 2, 9, "`break` here", "sequential loop"),
    "attribute target": ("req.x = 1\n", 1, 5, "an attribute target", "one local name"),
    "return a local": ("return t\n", 1, 12, "returning `t`", "return Out(field="),
    "list of another type in response": ("return Out(items=req.xs)\n", 1, 22,
                                         "a list[float] value for the list[int] field `items`",
                                         "same item type"),
    "positional field": ("return Out(1)\n", 1, 12, "returning `Out(1)`", "Out(field=value"),
    "ctx.send": ("ctx.send('x', req)\n", 1, 5, "this ctx.send(...)", "sends={'name': Cls}"),
    "nested prange": ("for i in rg.prange(4):\n    for j in rg.prange(4):\n        pass\n", 2, 9,
                      "a prange inside a prange", "range()"),
    "outer assignment in prange": ("for i in rg.prange(4):\n    t = i\n", 2, 9,
                                   "assigning the outer local `t` inside a prange", "+="),
    "accumulator read in prange": ("for i in rg.prange(4):\n    acc += acc\n", 2, 16,
                                   "reading the accumulator `acc` inside its prange", "after the loop"),
    "two accumulations": ("for i in rg.prange(4):\n    acc += 1.0\n    acc += 2.0\n", 3, 9,
                          "a second accumulation into `acc`", "once an iteration"),
    "accumulation in inner loop": ("for i in rg.prange(4):\n    for j in range(2):\n        acc += 1.0\n",
                                   3, 13, "accumulating into `acc` in a loop inside a prange", "once"),
    "prange private after loop": ("for i in rg.prange(4):\n    k = i\nt = k\n", 3, 9,
                                  "`k` after the prange that assigned it", "undefined"),
    "return in prange": ("for i in rg.prange(4):\n    return None\n", 2, 9, "return inside a prange",
                         "after it"),
    "reduction in conditional": ("t = sum(req.xs) if req.x else 0\n", 1, 9,
                                 "sum/min/max inside a conditional expression", "if statement"),
    "and of ints": ("t = req.x and 2\n", 1, 9, "and/or of values that are not bools", "x != 0"),
    "prange step": ("for i in rg.prange(0, 8, 2):\n    pass\n", 1, 14, "a prange with a step", "scale"),
    "slice": ("w = req.xs[1:]\n", 1, 9, "a slice", "range(start, stop)"),
    "str arithmetic": ("return Out(v=len('é' * 2))\n", 1, 22, "arithmetic on a str", "ints, floats"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_construct_is_an_error_at_its_position(case: str, tmp_path: Path) -> None:
    body, line, col, construct, instead = UNSUPPORTED[case]
    with pytest.raises(TranslationError) as info:
        _build(tmp_path, body)
    diagnostics = info.value.diagnostics
    assert len(diagnostics) == 1, str(info.value)
    d = diagnostics[0]
    assert (d.line, d.col) == (BODY_LINE + line - 1, col), str(info.value)
    assert construct in d.construct, str(info.value)
    assert instead in d.instead, str(info.value)
    assert f".py:{d.line}:{d.col}: {d.construct} is not supported" in str(info.value)


def test_every_error_of_a_handler_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(TranslationError) as info:
        _build(tmp_path, "t = [1]\nu = t + 1\nw = {}\nt = 2.5\n")
    # u follows from t's error and is not reported again; the others are independent
    assert [(d.line - BODY_LINE + 1, d.construct) for d in info.value.diagnostics] == [
        (1, "a list literal"), (3, "a dict literal"), (4, "a float value for `t` of type int")]


# ---- Python's meaning, on the CPU backend, against the Python function ----


# Every granularity of @ring_kernel(per=...): the corpus as written (per="block"), and copies
# of it with per="warp" (a block of 48: a warp of 32 and one of 16 side by side) and
# per="thread" (32 threads, each on its own request). `running` has state= and stays a block.
PERS = ("block", "warp", "thread")
_VARIANT = {"warp": ('PER = "warp"', "BLOCK = 48"), "thread": ('PER = "thread"', "BLOCK = 32")}


def corpus_module(per: str, folder: Path) -> str:
    """The corpus module of this granularity: schemas.translated, or a copy of its file."""
    if per == "block":
        return "schemas.translated"
    source = (ROOT / "tests" / "schemas" / "translated.py").read_text()
    assert 'PER = "block"\nBLOCK = 32\n' in source
    per_line, block_line = _VARIANT[per]
    path = folder / f"translated_{per}.py"
    path.write_text(source.replace('PER = "block"\nBLOCK = 32\n', f"{per_line}\n{block_line}\n"))
    return str(path)


_BUILT: dict[str, Path] = {}  # a copy's module is imported once a process: built once


def build_corpus(per: str, factory: pytest.TempPathFactory) -> Path:
    """The corpus package of this granularity, built in this process."""
    if per not in _BUILT:
        folder = factory.mktemp(f"translated_{per}")
        p = plan([corpus_module(per, folder)], folder / "gen")
        write_package(p.package_dir, p.files())
        _BUILT[per] = p.package_dir
    return _BUILT[per]


@pytest.fixture(scope="module", params=PERS)
def corpus(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, SyncRuntime]]:
    per = request.param
    package_dir = build_corpus(per, tmp_path_factory)
    pkg = import_package(package_dir, f"rg_translated_corpus_{per}")
    assert kernel_spec(pkg.arith).per == per  # type: ignore[attr-defined, union-attr]
    with SyncRuntime(pkg, backend="cpu") as runtime:
        yield pkg, runtime


# state= keeps a Python handler per="block": the tests of `running` need one corpus
BLOCK_ONLY = pytest.mark.parametrize("corpus", ["block"], indirect=True)


def _agree(corpus: tuple[Any, SyncRuntime], kernel_id: str, requests: list[Any]) -> list[str]:
    pkg, runtime = corpus
    spec = kernel_spec(getattr(pkg, kernel_id))
    assert spec is not None
    kernel = CompiledKernel(runtime, kernel_id)
    problems = []
    try:
        for req in requests:
            python, compiled = run_python(spec, req), kernel.run(req)
            problems += [f"{req!r}: {d}" for d in agree(spec, python, compiled)]
            if compiled.error is None and python.error is None:
                assert compiled.response is not None or python.response is None
    finally:
        runtime.terminate(kernel_id)
    return problems


def test_floor_division_modulo_power_and_nan_as_python(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg = corpus[0]
    nan, inf = math.nan, math.inf
    pairs = [(-7, 2), (7, -2), (-7, -2), (7, 2), (-1, 3), (0, -5), (-2**31, -1), (2**31 - 1, -2**31),
             (5, 0), (-5, 0)]
    floats = [(-7.5, 2.0), (7.5, -2.0), (-0.0, 3.0), (0.0, -3.0), (1e300, 1e-300), (-1.0, inf),
              (nan, 1.0), (1.0, nan), (-0.0, 0.0), (0.0, -0.0), (5.0, 0.0), (-inf, -inf)]
    requests = [pkg.Numbers(a=a, b=b, x=x, y=y, f=f, u=u, flag=flag)
                for (a, b), (x, y), f, u, flag in zip(
                    pairs * 2, floats + floats[:8], [0.0, -1.5, 3.4e38, -0.0, 1e-45] * 4,
                    [0, 255, 1, 128] * 5, [True, False] * 10, strict=True)]
    assert _agree(corpus, "arith", requests) == []


def test_int64_overflow_traps_where_python_has_no_int64(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg = corpus[0]
    requests = [pkg.Big(a=a, b=b) for a, b in [
        (-7, 2), (-2**63, -1), (-2**63, 2), (5, 0), (-2**21, 3), (-2**21 - 1, 3), (2**62, -2),
        (-(2**62), -2), (3, -2**63)]]
    assert _agree(corpus, "overflow", requests) == []


def test_reductions_lists_strings_optional_as_python(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg = corpus[0]
    nan = math.nan
    lists = [[], [nan, 1.0], [1.0, nan], [-0.0, 0.0], [0.0, -0.0], [nan, nan], [1e308, 1e308, -1e308],
             [float(i) * 0.1 for i in range(40)], [-1.0] * 33 + [2.0] * 7, [3.0]]
    requests = [pkg.Samples(values=v, counts=c, label=label, limit=limit, inner=inner)
                for v, c, label, limit, inner in zip(
                    lists, [[], [2**31 - 1, 2**31 - 1], [-2**31], [1, 2, 3]] * 3,
                    ["", "é" * 6, "skip", "€€€€", "abc"] * 2, [None, 1, -5, 2**40, None] * 2,
                    [None, pkg.Inner(scale=2.0, tag=-3)] * 5, strict=False)]
    assert _agree(corpus, "stats", requests) == []


def test_a_trap_names_the_python_line(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg, runtime = corpus
    runtime.launch("overflow")
    try:
        with pytest.raises(Exception) as info:
            runtime.request("overflow", pkg.Big(a=1, b=0), timeout=10.0)
        text = str(info.value) + "".join(str(d.detail) for d in runtime.dead_letters)
    finally:
        runtime.terminate("overflow")
    source = (ROOT / "tests" / "schemas" / "translated.py").read_text().splitlines()
    line = next(i for i, t in enumerate(source, 1) if "d=req.a // req.b" in t)
    assert re.search(rf"translated(_warp|_thread)?\.py:{line}\b", text), text


# ---- the C compilers ----


def _all_translated(tmp_path: Path, per: str, factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(one translation unit of every translated kernel of the corpus of this granularity, its
    package folder): one compiler start, not one a kernel; the worker example's is compiled
    with the other generated kernels."""
    folder = CORPUS if per == "block" else build_corpus(per, factory)
    unit = tmp_path / "translated_all.cu"
    unit.write_text("".join(f'#include "{p}"\n' for p in sorted(folder.glob("*.cu"))))
    return unit, folder


@pytest.mark.parametrize("per", PERS)
def test_translated_sources_compile_with_gpp_werror(per: str, tmp_path: Path,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    unit, folder = _all_translated(tmp_path, per, tmp_path_factory)
    compile_cpp([unit], tmp_path / "all.o", [folder, cccl_include()], ["-x", "c++", "-c"])


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
@pytest.mark.parametrize("per", PERS)
def test_translated_sources_compile_with_nvcc_sm90(per: str, tmp_path: Path,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    unit, folder = _all_translated(tmp_path, per, tmp_path_factory)
    compile_nvcc(unit, tmp_path / "all.cubin", [folder])


def test_a_group_waits_only_for_itself(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A warp's handler meets with __syncwarp over its lanes and a thread's with no one: a
    __syncthreads there would wait for groups that are on other requests (or none)."""
    for per in ("warp", "thread"):
        folder = build_corpus(per, tmp_path_factory)
        for kernel in ("arith", "stats", "fields", "scale", "sender", "overflow"):
            handler = (folder / f"{kernel}.cu").read_text().split("// ---- end of the handler")[0]
            assert "__syncthreads" not in handler and "threadIdx.x == 0" not in handler, (per, kernel)
            assert ("__syncwarp(rg_lanes)" in handler) == (per == "warp" and kernel in ("stats", "scale"))


@pytest.mark.parametrize("kernel_id", ["arith", "stats", "overflow", "fields", "sender"])
def test_hypothesis_messages_agree_with_python(kernel_id: str, corpus: tuple[Any, SyncRuntime]) -> None:
    pkg, runtime = corpus
    spec = kernel_spec(getattr(pkg, kernel_id))
    assert spec is not None
    verify_kernel(runtime, spec, 60, progress=lambda line: None)


def test_groups_side_by_side_agree_with_python(corpus: tuple[Any, SyncRuntime],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests sent at once: a round takes a batch, and the block's groups (two warps, or 32
    threads) handle theirs side by side, each with its own reductions and response; every
    response is the Python function's for its own request. Under ThreadSanitizer: the CPU
    backend runs a warp's fibers up to its __syncwarp, so two warps that shared a scratch slot
    would still agree there; the race check sees them touch it between two block barriers."""
    pkg = corpus[0]
    spec = kernel_spec(pkg.stats)
    assert spec is not None
    rng = np.random.default_rng(13)
    requests = [pkg.Samples(values=[float(v) for v in rng.normal(size=n % 41)],
                            counts=[int(c) for c in rng.integers(-100, 100, size=n % 9)],
                            label=["", "ab", "skip", "é" * 6][n % 4], limit=[None, 0, 50][n % 3],
                            inner=None if n % 2 else pkg.Inner(scale=0.5, tag=n))
                for n in range(160)]
    pythons = [run_python(spec, req) for req in requests]
    monkeypatch.setenv("RINGGEN_RACE_CHECK", "1")  # read by a runtime as it starts
    with SyncRuntime(pkg, backend="cpu") as checked:
        checked.launch("stats")
        assert checked.send_many("stats", requests, timeout=10.0) == len(requests)
        checked.drain("stats", timeout=60.0)
        expected = sum(r.label != "skip" for r in requests)
        got: dict[Any, Any] = {}
        while len(got) < expected:  # a response a request that is not skipped, or a timeout
            batch = checked.receive_many("stats", expected - len(got), timeout=30.0)
            assert batch, f"{len(got)} of {expected} responses"
            got.update((r.correlation_id, r) for r in batch)
        # ctx.fail() is counted per kernel, not per request: the count is compared
        assert checked.telemetry("stats").errors == sum(p.failed for p in pythons)
    problems = []
    for req, python in zip(requests, pythons, strict=True):
        kernel = Outcome(got.get(req.message_id), python.failed, None)
        problems += [f"{req!r}: {d}" for d in agree(spec, python, kernel)]
    assert problems == []


# ---- state= in a Python handler ----


@BLOCK_ONLY
def test_state_fields_are_kept_across_requests_as_python(corpus: tuple[Any, SyncRuntime]) -> None:
    """The state after each request equals what the Python function leaves in its own state
    (grid 1: one block, one state), NaN and inf included; a reset returns no response."""
    pkg, runtime = corpus
    spec = kernel_spec(pkg.running)
    assert spec is not None and spec.state is not None
    kernel = CompiledKernel(runtime, "running")
    python_state = spec.state()
    batches = [pkg.Batch(values=v, reset=r) for v, r in [
        ([1.0, 2.0, 4.0], False), ([], False), ([-3.5] * 8, False), ([0.1] * 5, False),
        ([], True), ([math.inf, 1.0], False), ([math.nan], False), ([2.0], True), ([7.0], False)]]
    try:
        for batch in batches:
            python, compiled = run_python(spec, batch, python_state), kernel.run(batch)
            assert agree(spec, python, compiled) == [], batch
            assert (compiled.response is None) == batch.reset
            [snapshot] = runtime.read_state("running")
            assert state_differences(spec, python_state, snapshot) == [], batch
        assert python_state.ticks == 3 + len(batches) and python_state.seen_negative
    finally:
        runtime.terminate("running")


@BLOCK_ONLY
def test_verify_drives_a_stateful_kernel_with_request_sequences(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg, runtime = corpus
    spec = kernel_spec(pkg.running)
    assert spec is not None
    verify_kernel(runtime, spec, 12, progress=lambda line: None)


# ---- every field kind: str by character, UUID, datetime, enum, nested, Optional, list ----


def test_every_field_kind_as_python(corpus: tuple[Any, SyncRuntime]) -> None:
    """Strings at MaxLen in bytes (multi-byte characters), empty lists and strings, None and
    present Optionals, copies that do not fit the response's MaxLen (a ValueError in Python, a
    trap in C), enum members, UUIDs and datetimes compared and copied."""
    pkg = corpus[0]
    u1, u2 = uuid.UUID(int=1), uuid.UUID(int=2**128 - 1)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    t1 = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)
    texts = ["", "a", "é" * 8, "ab12€x", "€€€€€", "zzz", "ab", "9", "aé1"]
    others = ["", "ab", "b", "€", "é" * 8, "zz", "x", "abc", "é"]
    requests = [pkg.Record(text=text, other=other, ids=ids, owner=owner, peer=peer, start=start,
                           end=end, mode=mode, modes=modes, tag=tag, index=index)
                for text, other, ids, (owner, peer), (start, end), mode, modes, tag, index in zip(
                    texts, others, [[], [1, -2, 3], [-2**15] * 5, [7]] * 3,
                    [(None, None), (u1, None), (None, u2), (u1, u1), (u1, u2)] * 2,
                    [(None, t0), (t0, t1), (t1, t0), (t0, t0)] * 3,
                    [pkg.Mode.FAST, pkg.Mode.SAFE, pkg.Mode.OFF] * 3,
                    [[], [pkg.Mode.SAFE, pkg.Mode.FAST], [pkg.Mode.OFF] * 3] * 3,
                    [None, pkg.Tag(name="copy", weight=1.5), pkg.Tag(name="no")] * 3,
                    [0, -1, 7, -100, 2**40] * 2, strict=False)]
    assert _agree(corpus, "fields", requests) == []


def test_a_str_index_out_of_range_traps_as_python_raises(corpus: tuple[Any, SyncRuntime]) -> None:
    pkg = corpus[0]
    # len(text) > 0 guards text[-1]; index % len keeps the other index in range: both agree
    # on every index, and a copy over the response's MaxLen (4 bytes) raises/traps alike
    requests = [pkg.Record(text="héllo", other=other, index=i)
                for i, other in enumerate(["abcd", "abcde", "€", "€€"])]
    assert _agree(corpus, "fields", requests) == []


STATEFUL = HEADER.replace('@ring_kernel(kernel_id="bad", input=In, output=Out)\ndef bad(req, ctx):',
                          """@dataclass
class Count:
    n: int = 0


@ring_kernel(kernel_id="bad", input=In, output=Out, state=Count)
def bad(req, state, ctx):""")


def test_state_errors_name_the_state_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad_state.py"
    path.write_text(STATEFUL + "    s = state\n    state.nope = 1\n    state = 2\n    return None\n")
    with pytest.raises(TranslationError) as info:
        plan([str(path)], tmp_path / "out")
    first = STATEFUL.count("\n") + 1
    assert [(d.line - first, d.construct, d.instead) for d in info.value.diagnostics] == [
        (0, "the state `state` as a value", "read and assign its fields: state.n"),
        (1, "the state field .nope", "Count has n"),
        (2, "assigning to the parameter `state`", "assign to a new local name or to a state field")]


# ---- ctx.buffer(ref, dtype) ----


def test_a_buffer_view_is_read_and_written_as_python(corpus: tuple[Any, SyncRuntime]) -> None:
    """The kernel's buffer ends as the Python function leaves a copy of it (float32 items,
    written in a prange and by the sequential code, negative index), and the responses agree;
    a buffer of another dtype is a TypeError in Python and a trap in C."""
    pkg, runtime = corpus
    spec = kernel_spec(pkg.scale)
    assert spec is not None
    kernel = CompiledKernel(runtime, "scale")
    try:
        for n, factor, bump in [(1, 2.0, 0), (5, -1.5, 3), (70, 0.1, -2**31), (33, 1e38, 7)]:
            values = np.linspace(-3.0, 7.0, n).astype(np.float32)
            device = runtime.unified_buffer(n, np.float32)
            device.host[:] = values
            mirror = UnifiedBuffer(n, np.float32)
            mirror.host[:] = values
            with np.errstate(over="ignore"):
                python = run_python(spec, pkg.Scale(data=mirror.ref, factor=factor, bump=bump))
            compiled = kernel.run(pkg.Scale(data=device.ref, factor=factor, bump=bump))
            assert python.error is None and agree(spec, python, compiled) == [], (n, python, compiled)
            assert device.host.tobytes() == mirror.host.tobytes(), n
        wrong = runtime.unified_buffer(4, np.float64)
        assert run_python(spec, pkg.Scale(data=wrong.ref)).error == "TypeError"
        assert kernel.run(pkg.Scale(data=wrong.ref)).error is not None
    finally:
        runtime.terminate("scale")


def test_the_calculator_parses_as_its_python(tmp_path: Path) -> None:
    """examples/calculator.py, a parser written in Python, on inputs at its edges: digit and
    decimal limits, signs, spaces, non-ASCII digits and letters, a 64-byte expression."""
    pkg = generated_package("calculator")
    spec = kernel_spec(pkg.calculator)
    assert spec is not None
    expressions = ["", " ", "-", "1.", ".5", "1.2.3", "\u0663 + 1", "123456789012345 + 1",
                   "1234567890123456", "0.12345678 * 3", "0.123456789", "1e5", "-0 * 5", "2 / -0",
                   "é", "1+2", "1 +2 ", "  -3.25/0.5", "9" * 64, "7 % 2", "-1.5 - -1.5", "4 /"]
    with SyncRuntime(pkg, backend="cpu") as runtime:
        kernel = CompiledKernel(runtime, "calculator")
        for text in expressions:
            req = pkg.CalculateRequest(expression=text)
            assert agree(spec, run_python(spec, req), kernel.run(req)) == [], text


# ---- ctx.send ----


def test_sends_are_the_python_functions(corpus: tuple[Any, SyncRuntime]) -> None:
    """What the translated handler sends (to targets bound to nothing: UNBOUND dead letters
    naming the target) equals what the Python function sends, per target in order."""
    pkg, runtime = corpus
    spec = kernel_spec(pkg.sender)
    assert spec is not None
    kernel = CompiledKernel(runtime, "sender", sends=("audit", "echo"))
    try:
        for values, reset in [([], False), ([1.5, -2.0, 3.0], True), ([0.5] * 8, False), ([], True)]:
            batch = pkg.Batch(values=values, reset=reset)
            python = run_python(spec, batch)
            compiled = kernel.run(batch, len(python.sent))
            assert len(python.sent) == sum(v > 0 for v in values) + reset
            assert agree(spec, python, compiled) == [], (batch, python.sent, compiled.sent)
    finally:
        runtime.terminate("sender")


# ---- a response's defaults ----

NESTED_DEFAULTS = '''\
from __future__ import annotations
from dataclasses import dataclass, field
from typing import Annotated
import numpy as np
from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Tag:
    name: Annotated[str, MaxLen(8)] = "none"
    weight: float = 1.5
    level: np.int16 = 3


@message
@dataclass
class Holder:
    tag: Tag = field(default_factory=lambda: Tag(name="held", level=-4))
    count: int = 7


@message
@dataclass
class Ask:
    x: int = 0


@message
@dataclass
class Answer:
    x: int = 0
    tag: Tag = field(default_factory=Tag)
    custom: Tag = field(default_factory=lambda: Tag(name="custom", weight=-2.0))
    maybe: Tag | None = field(default_factory=lambda: Tag(level=9))
    absent: Tag | None = None
    holder: Holder = field(default_factory=Holder)


@ring_kernel(kernel_id="defaults", input=Ask, output=Answer)
def defaults(req: Ask) -> Answer:
    return Answer(x=req.x)


@ring_kernel(kernel_id="nested", input=Ask, output=Holder)
def nested(req: Ask) -> Holder:
    return Holder(count=req.x)
'''


def test_message_typed_field_defaults_are_the_c_init(tmp_path: Path) -> None:
    """A response starts from its defaults: a message-typed field's (its class's own, or what
    its default_factory makes, nested in turn, Optional too) as Python's constructor gives
    them, not zeros."""
    from ringgen.verify import verify

    path = tmp_path / "nested_defaults.py"
    path.write_text(NESTED_DEFAULTS)
    assert verify(str(path), examples=5, progress=lambda line: None) == ["defaults", "nested"]


CONSTANT_DEFAULTS = '''\
from __future__ import annotations
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated
from uuid import UUID
from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Ping:
    x: int = 0


@message
@dataclass
class Stamped:
    x: int = 0
    naive: datetime = datetime(2021, 3, 4, 5, 6, 7, 890123)
    aware: datetime = datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    before_epoch: datetime = datetime(1960, 1, 1, tzinfo=timezone.utc)
    ident: UUID = UUID("12345678-9abc-4def-8123-456789abcdef")
    maybe: int | None = 5
    maybe_zero: float | None = 0.0
    weights: Annotated[tuple[float, ...], MaxLen(4)] = (1.5, -2.0, 3.25)
    names: Annotated[list[Annotated[str, MaxLen(4)]], MaxLen(3)] = field(
        default_factory=lambda: ["ab", "", "xyz"])


@ring_kernel(kernel_id="stamped", input=Ping, output=Stamped)
def stamped(req: Ping) -> Stamped:
    return Stamped(x=req.x)
'''


def test_constant_field_defaults_are_the_c_init(tmp_path: Path) -> None:
    """Datetime, UUID, Optional and list defaults (a constant, or a list's factory) are what
    Python's constructor gives in a translated handler's response too, not zeros."""
    from ringgen.verify import verify

    path = tmp_path / "constant_defaults.py"
    path.write_text(CONSTANT_DEFAULTS)
    assert verify(str(path), examples=5, progress=lambda line: None) == ["stamped"]
