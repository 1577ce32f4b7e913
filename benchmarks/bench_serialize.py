"""Serialize + deserialize, and construction: ringgen beside two baselines in the same run.

* hand-written: what a user would write without ringgen (a dict of the fields,
  `msgpack.packb` with a `default=` hook for UUID, `Cls(**unpackb(...))`).
* msgspec: a `msgspec.Struct` of the same fields, its typed encoder and decoder -- the speed of
  typed msgpack in C. Its bytes are asserted equal to ringgen's, so both do the same work.

Two messages: the seed's WorkRequest, and one with every type of the type table that msgspec
writes as ringgen does (float32 and Any aside). Ratios are baseline / ringgen: above 1 ringgen is
faster, 0.83 means ringgen takes 1.2x the baseline's time.

Two floors, measured in the same run, show what a message being a dataclass costs by itself:
msgspec's own encode + decode of a frozen dataclass of the same fields (no checks, no Python),
and constructing a class whose Python `__init__` only stores the fields. Times are CPU time of
this process (best of the interleaved rounds), so that neighbours on a shared machine do not
count.

    python benchmarks/bench_serialize.py
"""

from __future__ import annotations

import dataclasses
import enum
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import msgpack
import msgspec
import numpy as np

from ringgen import MaxLen, message
from ringgen.schema.ids import new_message_id


@message
@dataclass
class WorkRequest:
    data: Annotated[list[float], MaxLen(256)]
    operation: Annotated[str, MaxLen(16)] = "sum"


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@message
@dataclass
class Part:
    n: int
    tags: tuple[str, ...] = ()


@message
@dataclass
class EveryType:
    i: int
    f: float
    s: str
    b: bool
    raw: bytes
    nothing: None
    numbers: list[int]
    pair: tuple[int, str]
    mapping: dict[str, float]
    uid: UUID
    when: datetime
    part: Part
    mode: Mode
    small: np.int16
    maybe: int | None = None
    parts: list[Part] = field(default_factory=list)


class WorkRequestS(msgspec.Struct):
    data: list[float]
    operation: str = "sum"
    message_id: UUID = msgspec.field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


class PartS(msgspec.Struct):
    n: int
    tags: tuple[str, ...] = ()
    message_id: UUID = msgspec.field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


class EveryTypeS(msgspec.Struct):
    i: int
    f: float
    s: str
    b: bool
    raw: bytes
    nothing: None
    numbers: list[int]
    pair: tuple[int, str]
    mapping: dict[str, float]
    uid: UUID
    when: datetime
    part: PartS
    mode: Mode
    small: int
    maybe: int | None = None
    parts: list[PartS] = msgspec.field(default_factory=list)
    message_id: UUID = msgspec.field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


@dataclass(frozen=True)
class WorkRequestD:  # the roundtrip floor: msgspec's encode and decode of a plain dataclass
    data: list[float]
    operation: str = "sum"
    message_id: UUID = field(default_factory=new_message_id)
    priority: int = 128
    correlation_id: UUID | None = None


class StoresOnly:  # the construction floor: a Python __init__ that checks nothing
    def __init__(self, data: list[float], operation: str = "sum", *, message_id: UUID | None = None,
                 priority: int = 128, correlation_id: UUID | None = None) -> None:
        d = self.__dict__
        d["data"], d["operation"] = data, operation
        d["message_id"] = new_message_id() if message_id is None else message_id
        d["priority"], d["correlation_id"] = priority, correlation_id


_ENC = msgspec.msgpack.Encoder(uuid_format="bytes")


def _default(v: Any) -> Any:
    if isinstance(v, UUID):
        return v.bytes
    raise TypeError(type(v))


def hand_written_roundtrip(msg: WorkRequest) -> WorkRequest:
    names = [f.name for f in dataclasses.fields(msg)]
    data = msgpack.packb({n: getattr(msg, n) for n in names}, default=_default)
    fields = msgpack.unpackb(data)
    fields["message_id"] = UUID(bytes=fields["message_id"])
    if fields["correlation_id"] is not None:
        fields["correlation_id"] = UUID(bytes=fields["correlation_id"])
    return WorkRequest(**fields)


def best_us(fns: list[Callable[[], Any]], number: int = 20000, rounds: int = 9) -> list[float]:
    """Best of `rounds` per function, the rounds interleaved so a noisy neighbour slows all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], timeit.Timer(fn, timer=time.process_time).timeit(number=number))
    return [b / number * 1e6 for b in best]


def roundtrip_pair(ours: Any, theirs: msgspec.Struct) -> tuple[Callable[[], Any], Callable[[], Any]]:
    cls, decode = type(ours), msgspec.msgpack.Decoder(type(theirs)).decode
    data = ours.serialize()
    assert data == _ENC.encode(theirs), "msgspec must write ringgen's bytes for the ratio to mean anything"
    assert cls.deserialize(data) == ours and decode(data) == theirs
    return (lambda: cls.deserialize(ours.serialize())), (lambda: decode(_ENC.encode(theirs)))


def row(label: str, baseline: float, ours: float, baseline_name: str, goal: float | None = None,
        name: str = "ringgen") -> None:
    verdict = "" if goal is None else (
        f"  target >= {goal:g}x: {'met' if baseline / ours >= goal else 'NOT met'}")
    print(f"{label:<44} {name} {ours:6.2f} us  {baseline_name} {baseline:6.2f} us  "
          f"ratio {baseline / ours:5.2f}x{verdict}")


def main() -> None:
    req = WorkRequest(data=[1.0, 2.0, 3.0])
    req_s = WorkRequestS(data=[1.0, 2.0, 3.0], message_id=req.message_id)
    part = Part(n=7, tags=("a", "b"))
    part_s = PartS(n=7, tags=("a", "b"), message_id=part.message_id)
    every_kw: dict[str, Any] = dict(
        i=-5, f=2.5, s="héllo", b=True, raw=b"\x00\x01", nothing=None, numbers=[1, 2, 300],
        pair=(4, "x"), mapping={"k": 1.5}, uid=uuid4(), when=datetime(2025, 1, 2, 3, 4, 5, 678),
        mode=Mode.SLOW, small=12, maybe=3)
    every = EveryType(**every_kw, part=part, parts=[part, part])
    every_s = EveryTypeS(**every_kw, part=part_s, parts=[part_s, part_s], message_id=every.message_id)

    assert hand_written_roundtrip(req) == req
    ours_req, ms_req = roundtrip_pair(req, req_s)
    ours_all, ms_all = roundtrip_pair(every, every_s)
    plain = WorkRequestD(data=[1.0, 2.0, 3.0], message_id=req.message_id)
    decode_plain = msgspec.msgpack.Decoder(WorkRequestD).decode
    assert _ENC.encode(plain) == req.serialize() and decode_plain(req.serialize()) == plain
    hand, o1, m1, o2, m2, floor = best_us([lambda: hand_written_roundtrip(req), ours_req, ms_req, ours_all,
                                           ms_all, lambda: decode_plain(_ENC.encode(plain))])
    print("serialize + deserialize (same bytes asserted)")
    row("  WorkRequest vs hand-written msgpack", hand, o1, "hand")
    row("  WorkRequest vs msgspec Struct", m1, o1, "msgspec", 0.83)  # within 1.2x of its time
    row("  EveryType vs msgspec Struct", m2, o2, "msgspec", 0.83)
    row("  WorkRequest floor: msgspec on a dataclass", m1, floor, "msgspec", name="  floor")

    class WorkRequestIds(msgspec.Struct):  # the Struct with ringgen's id source, not uuid4
        data: list[float]
        operation: str = "sum"
        message_id: UUID = msgspec.field(default_factory=new_message_id)
        priority: int = 128
        correlation_id: UUID | None = None

    ours_new, s_uuid4, s_ids, stores = best_us([
        lambda: WorkRequest(data=[1.0, 2.0, 3.0]), lambda: WorkRequestS(data=[1.0, 2.0, 3.0]),
        lambda: WorkRequestIds(data=[1.0, 2.0, 3.0]), lambda: StoresOnly(data=[1.0, 2.0, 3.0])])
    print("construction (ringgen validates every field; a Struct checks nothing)")
    row("  WorkRequest vs Struct, ids by uuid4", s_uuid4, ours_new, "msgspec")
    row("  WorkRequest vs Struct, ids as ringgen's", s_ids, ours_new, "msgspec", 0.77)  # 1.3x
    row("  floor: an __init__ that only stores", s_ids, stores, "msgspec", name="  floor")


if __name__ == "__main__":
    main()
