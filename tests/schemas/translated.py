"""Handlers written in Python: a corpus of the translator's subset (golden .cu in
tests/golden/translated, compiled with g++ -Werror and nvcc, verified against the Python)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from uuid import UUID

import numpy as np

import ringgen as rg
from ringgen import BufferRef, MaxLen, message, ring_kernel

LIMIT = 1000  # a module constant is a literal in the translated code
# The granularity of the stateless kernels, and their block: tests/test_translate.py builds
# copies of this module with per="warp" (two warps, the second of 16 lanes) and per="thread".
PER = "block"
BLOCK = 32


@message
@dataclass
class Numbers:
    a: np.int32 = 0
    b: np.int32 = 0
    x: float = 0.0
    y: float = 0.0
    f: np.float32 = 0.0
    u: np.uint8 = 0
    flag: bool = False


@message
@dataclass
class Arith:
    q: int = 0
    r: int = 0
    fq: float = 0.0
    fr: float = 0.0
    ip: int = 0
    fp: float = 0.0
    mx: float = 0.0
    mn: float = 0.0
    ab: int = 0
    trunc: int = 0
    narrow: np.int32 = 0
    f32: np.float32 = 0.0
    both: bool = False
    root: float = 0.0
    steps: int = 0


@ring_kernel(kernel_id="arith", input=Numbers, output=Arith, block=BLOCK, per=PER)
def arith(req: Numbers) -> Arith:
    """Python's arithmetic where C's differs: floor division and modulo of negatives, **,
    min/max with NaN, abs, int() of a float, narrowing into numpy fields."""
    a = req.a
    b = req.b
    q = a // b if b != 0 else -a // 7
    r = a % b if b != 0 else -a % 7
    fq = 0.0
    fr = 0.0
    if req.y != 0.0 and math.isfinite(req.x) and math.isfinite(req.y):
        fq = req.x // req.y
        fr = req.x % req.y
    steps = 0
    n = abs(a) % 50
    while n > 1:  # Collatz steps
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
        if steps > LIMIT:
            break
    for k in range(10, 0, -3):
        if k == 4:
            continue
        steps += k
    trunc = 0
    if math.isfinite(req.x) and abs(req.x) < 1e18:
        trunc = int(req.x)
    # math.floor gives an int, which is 64-bit here: keep its argument in range
    root = math.sqrt(abs(req.x)) + (math.floor(req.f) * 0.5 if abs(req.f) < 1e9 else -1.0)
    return Arith(q=q, r=r, fq=fq, fr=fr, ip=(a % 9) ** 3 - b, fp=abs(req.x) ** 0.5,
                 mx=max(req.x, req.y), mn=min(req.x, req.y, 2.5), ab=abs(a - b), trunc=trunc,
                 narrow=a + req.u, f32=req.x * 0.5, both=req.flag and req.x > req.y,
                 root=root, steps=steps)


@message
@dataclass
class Inner:
    scale: float = 1.0
    tag: np.int16 = 0


@message
@dataclass
class Samples:
    values: Annotated[list[float], MaxLen(40)]
    counts: Annotated[list[np.int32], MaxLen(8)]
    label: Annotated[str, MaxLen(12)] = ""
    limit: int | None = None
    inner: Inner | None = None


@message
@dataclass
class Stats:
    total: float = 0.0
    scaled: float = 0.0
    hi: float = 0.0
    lo: float = 0.0
    first_hi: float = 0.0
    positives: int = 0
    isum: int = 0
    chars: int = 0
    over: int = 0
    swept: float = 0.0
    status: Annotated[str, MaxLen(16)] | None = None


@ring_kernel(kernel_id="stats", input=Samples, output=Stats, block=BLOCK, per=PER)
def stats(req: Samples, ctx: object) -> Stats | None:
    """Block reductions (prange accumulations, sum/min/max of lists and generators), reading
    str, Optional, nested and list fields, early return, reply and ctx.fail()."""
    if req.label == "skip":
        return None
    if len(req.values) == 0:
        ctx.fail()  # type: ignore[attr-defined]
        return req.reply(Stats, status="empty")
    total = 0.0
    hi = -math.inf
    positives = 0
    for i in rg.prange(len(req.values)):
        v = req.values[i]
        if v != v:
            continue  # NaN
        total += v
        hi = max(hi, v)
        if v > 0:
            positives += 1
    scale = 1.0
    if req.inner is not None:
        scale = req.inner.scale + req.inner.tag
    scaled = sum(v * scale for v in req.values)
    swept = 0.0
    for k in range(3):  # one prange run after another: its result slot is reused
        part = 0.0
        for i in rg.prange(len(req.values)):
            part += req.values[i] * k
        swept += part
    isum = sum(req.counts)
    over = 0
    if req.limit is not None:
        for c in req.counts:
            if c > req.limit:
                over += 1
    return Stats(total=total, scaled=scaled, hi=hi, lo=min(req.values), first_hi=max(req.values),
                 positives=positives, isum=isum, chars=len(req.label), over=over, swept=swept)


@message
@dataclass
class Big:
    a: int = 0
    b: int = 0


@message
@dataclass
class BigResult:
    s: int = 0
    p: int = 0
    d: int = 0
    m: int = 0
    n: int = 0
    cube: int = 0


@ring_kernel(kernel_id="overflow", input=Big, output=BigResult, block=BLOCK, per=PER)
def overflow(req: Big) -> BigResult:
    """64-bit ints: every operation checked; a result outside int64 traps at this line."""
    return BigResult(s=req.a + req.b, p=req.a * req.b, d=req.a // req.b, m=req.a % req.b,
                     n=-req.a, cube=req.a ** 3)


@dataclass
class Running:
    """Each block's running statistics (Welford), kept across requests."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    seen_negative: bool = False
    ticks: np.int16 = 3  # a narrow field with a non-zero default


@message
@dataclass
class Batch:
    values: Annotated[list[float], MaxLen(8)]
    reset: bool = False


@message
@dataclass
class Summary:
    count: int = 0
    mean: float = 0.0
    variance: float = 0.0
    total: float = 0.0
    ticks: int = 0


@ring_kernel(kernel_id="running", input=Batch, output=Summary, block=32, state=Running)
def running(req: Batch, state: Running) -> Summary | None:
    """State fields: read, assigned, accumulated in a prange, kept across requests."""
    state.ticks = (state.ticks + 1) % 1000
    if req.reset:
        state.count = 0
        state.mean = 0.0
        state.m2 = 0.0
        return None
    for i in rg.prange(len(req.values)):
        state.total += req.values[i]
    for v in req.values:
        state.count += 1
        delta = v - state.mean
        state.mean += delta / state.count
        state.m2 += delta * (v - state.mean)
        if v < 0:
            state.seen_negative = True
    variance = state.m2 / (state.count - 1) if state.count > 1 else 0.0
    return Summary(count=state.count, mean=state.mean, variance=variance, total=state.total,
                   ticks=state.ticks)


class Mode(enum.Enum):
    FAST = 1
    SAFE = 2
    OFF = -7


@message
@dataclass
class Tag:
    name: Annotated[str, MaxLen(6)] = ""
    weight: np.float32 = 1.0


@message
@dataclass
class Record:
    text: Annotated[str, MaxLen(16)]
    other: Annotated[str, MaxLen(16)] = ""
    ids: Annotated[list[np.int16], MaxLen(5)] = ()
    owner: UUID | None = None
    peer: UUID | None = None
    start: datetime | None = None
    end: datetime | None = None
    mode: Mode = Mode.FAST
    modes: Annotated[list[Mode], MaxLen(3)] = ()
    tag: Tag | None = None
    index: int = 0


@message
@dataclass
class Parsed:
    first: Annotated[str, MaxLen(4)] = ""  # shorter than Record.text: copying checks MaxLen
    echo: Annotated[str, MaxLen(16)] | None = None
    ids: Annotated[list[np.int16], MaxLen(8)] = ()
    owner: UUID | None = None
    start: datetime | None = None
    mode: Mode = Mode.SAFE
    tag: Tag | None = None
    inner: Tag | None = None  # (a message default, Tag(...), is not applied by the C init yet)
    digits: int = 0
    vowels: int = 0
    code: int = 0
    order: int = 0
    same_owner: bool = False
    later: bool = False
    fast: int = 0
    found: bool = False


@ring_kernel(kernel_id="fields", input=Record, output=Parsed, block=BLOCK, per=PER)
def fields(req: Record) -> Parsed:
    """Every field kind read, compared and copied into the response: str by character
    (indexing, iteration, ord, `in`, ordering), UUID, datetime, enum, nested, Optional, list;
    lists built by comprehensions."""
    digits = 0
    vowels = 0
    for c in req.text:
        if "0" <= c <= "9":
            digits += 1
        elif c in "aeioué":
            vowels += 1
    code = 0
    if len(req.text) > 0:
        last = req.text[-1]
        code = ord(last) * 1000 + ord(req.text[req.index % len(req.text)])
    order = 0
    if req.text < req.other:
        order = -1
    elif req.text > req.other:
        order = 1
    later = False
    if req.start is not None and req.end is not None:
        later = req.end >= req.start
    fast = 0
    for m in req.modes:
        if m == Mode.FAST or m == req.mode:
            fast += 1
    if req.mode == Mode.OFF:
        return Parsed(mode=Mode.OFF, found="ab" in req.text,
                      ids=[i * i for i in range(req.index % 5, 10, 3)])
    if req.tag is not None and req.tag.name == "copy":
        return Parsed(first=req.tag.name, echo=req.other, ids=req.ids, owner=req.owner,
                      start=req.start, mode=req.mode, tag=req.tag,
                      inner=Tag(name="x", weight=req.tag.weight * 2), digits=digits)
    return Parsed(first=req.other, echo=None, owner=req.peer, digits=digits, vowels=vowels,
                  code=code, order=order, same_owner=req.owner == req.peer, later=later,
                  fast=fast, found=req.other in req.text, tag=Tag(name=req.other),
                  ids=[x * 2 for x in req.ids if x > 0])


@message
@dataclass
class Scale:
    data: BufferRef
    factor: float = 2.0
    bump: np.int32 = 0


@message
@dataclass
class Scaled:
    total: float = 0.0
    n: int = 0
    first: float = 0.0
    peak: float = 0.0


@ring_kernel(kernel_id="scale", input=Scale, output=Scaled, block=BLOCK, per=PER)
def scale(req: Scale, ctx: object) -> Scaled:
    """ctx.buffer(ref, dtype): items read and written in a prange (each iteration its own),
    written by the sequential code, and reduced."""
    view = ctx.buffer(req.data, np.float32)  # type: ignore[attr-defined]
    first = view[0] if len(view) > 0 else 0.0
    for i in rg.prange(len(view)):
        view[i] = view[i] * req.factor
    view[-1] += req.bump
    total = sum(view[i] for i in rg.prange(len(view)))
    return Scaled(total=total, n=len(view), first=first, peak=max(view))


@message
@dataclass
class Audit:
    seq: int = 0
    step: int = 0
    note: Annotated[str, MaxLen(8)] = ""


@ring_kernel(kernel_id="sender", input=Batch, output=Summary, block=BLOCK, per=PER,
             sends={"audit": Audit, "echo": Batch})
def sender(req: Batch, ctx: object) -> Summary:
    """ctx.send: a message built by its constructor per item, in Python's order, and the
    request forwarded as it is."""
    for k in range(len(req.values)):
        if req.values[k] > 0:
            ctx.send("audit", Audit(seq=k, step=int(req.values[k]) if req.values[k] < 1e9 else -1,  # type: ignore[attr-defined]
                                    note="pos"))
    if req.reset:
        ctx.send("echo", req)  # type: ignore[attr-defined]
    return Summary(count=len(req.values))
