"""msgpack serialization: the seed's type table, round trips, schema evolution, malformed input."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from uuid import UUID, uuid4

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schemas.seed_messages import CalculateResponse, LogEvent, Response, WorkRequest

from ringgen import MessageSerializationError, message


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 9


@message
@dataclass
class Inner:
    n: int
    tags: tuple[str, ...] = ()


@message
@dataclass
class Middle:
    inner: Inner
    items: list[Inner] = field(default_factory=list)
    by_name: dict[str, Inner] = field(default_factory=dict)


@message
@dataclass
class AllTypes:
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
    nested: Middle
    color: Color
    level: Level
    maybe: Optional[int] = None  # noqa: UP045 - the Optional spelling is part of what is tested
    maybe_too: UUID | None = None
    int_keys: dict[int, list[float]] = field(default_factory=dict)
    f32: np.float32 = 0.0
    anything: Any = None


def _text(n: int = 20) -> st.SearchStrategy[str]:
    return st.text(max_size=n)


inner_st = st.builds(Inner, n=st.integers(-(2**63), 2**64 - 1), tags=st.tuples(_text(), _text()))
middle_st = st.builds(Middle, inner=inner_st, items=st.lists(inner_st, max_size=3),
                      by_name=st.dictionaries(_text(5), inner_st, max_size=2))
datetimes = st.one_of(st.datetimes(), st.datetimes(timezones=st.just(timezone.utc)),
                      st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))))
all_types_st = st.builds(
    AllTypes,
    i=st.integers(-(2**63), 2**64 - 1),
    f=st.floats(allow_nan=False),
    s=_text(),
    b=st.booleans(),
    raw=st.binary(max_size=40),
    nothing=st.none(),
    numbers=st.lists(st.integers(-(2**31), 2**31), max_size=5),
    pair=st.tuples(st.integers(0, 100), _text()),
    mapping=st.dictionaries(_text(5), st.floats(allow_nan=False), max_size=3),
    uid=st.uuids(),
    when=datetimes,
    nested=middle_st,
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    maybe=st.none() | st.integers(-5, 5),
    maybe_too=st.none() | st.uuids(),
    int_keys=st.dictionaries(st.integers(-3, 3), st.lists(st.floats(allow_nan=False), max_size=2)),
    f32=st.floats(width=32, allow_nan=False),
    anything=st.none() | st.integers(-(2**63), 2**64 - 1) | _text()
    | st.lists(st.integers(-(2**63), 2**63), max_size=3),
    priority=st.integers(0, 255),
    correlation_id=st.none() | st.uuids(),
)


@settings(max_examples=100, deadline=None)
@given(all_types_st)
def test_round_trip_restores_every_type(msg: AllTypes) -> None:
    back = AllTypes.deserialize(msg.serialize())
    assert back == msg
    assert type(back.pair) is tuple and type(back.nested.inner.tags) is tuple
    assert isinstance(back.nested.items, list) and all(type(x) is Inner for x in back.nested.items)
    assert all(type(v) is Inner for v in back.nested.by_name.values())
    assert back.when.tzinfo == msg.when.tzinfo  # naive stays naive, aware keeps its offset
    assert type(back.color) is Color and type(back.level) is Level


def test_bytes_are_what_msgpack_python_reads() -> None:
    req = WorkRequest(data=[1.0, 2.0, 3.0], priority=255)
    wire = msgpack.unpackb(req.serialize())
    assert list(wire) == ["data", "operation", "message_id", "priority", "correlation_id"]
    assert wire["message_id"] == req.message_id.bytes and len(wire["message_id"]) == 16
    assert wire["priority"] == 255 and type(wire["priority"]) is int
    assert wire["correlation_id"] is None and wire["data"] == [1.0, 2.0, 3.0]

    when = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc)
    msg = AllTypes(i=1, f=1.5, s="x", b=True, raw=b"\x00\x01", nothing=None, numbers=[1],
                   pair=(1, "a"), mapping={"k": 1.0}, uid=uuid4(), when=when,
                   nested=Middle(inner=Inner(n=2)), color=Color.BLUE, level=Level.HIGH,
                   f32=0.1)
    data = msg.serialize()
    wire = msgpack.unpackb(data)
    assert wire["when"] == "2025-01-02T03:04:05.000678+00:00" == when.isoformat()
    assert wire["raw"] == b"\x00\x01" and wire["uid"] == msg.uid.bytes
    assert isinstance(wire["nested"], dict) and wire["nested"]["inner"]["n"] == 2
    assert wire["pair"] == [1, "a"] and wire["color"] == "blue" and wire["level"] == 9
    # float32 fields are msgpack float 32 (0xca), float fields float 64 (0xcb)
    assert b"\xa3f32\xca" + struct.pack(">f", 0.1) in data
    assert b"\xa1f\xcb" in data


def test_float32_in_nested_containers() -> None:
    @message
    @dataclass
    class Vec:
        xs: list[np.float32]
        opt: np.float32 | None = None

    v = Vec(xs=[0.5, 1.25], opt=2.5)
    data = v.serialize()
    f32 = b"\xca".join([b"", struct.pack(">f", 0.5), struct.pack(">f", 1.25)])
    assert data.startswith(b"\x85\xa2xs\x92" + f32 + b"\xa3opt\xca" + struct.pack(">f", 2.5))
    assert Vec.deserialize(data) == v


def test_seed_messages_round_trip() -> None:
    for msg in (WorkRequest(data=[1, 2, 3]), LogEvent(level="INFO", message="Started"),
                CalculateResponse(result=4.0, error=None),
                Response(success=False, error="Internal error", error_code=500),
                Response(result={"a": [1, 2.5, None, b"x", True]})):
        assert type(msg).deserialize(msg.serialize()) == msg


def test_any_field_carries_known_types() -> None:
    uid = uuid4()
    resp = Response(result={"id": uid, "level": Level.LOW, "inner": Inner(n=1)})
    wire = msgpack.unpackb(resp.serialize())
    assert wire["result"]["id"] == uid.bytes and wire["result"]["level"] == 1
    assert wire["result"]["inner"]["n"] == 1
    with pytest.raises(MessageSerializationError, match=r"Response: cannot serialize.*object"):
        Response(result=object()).serialize()
    with pytest.raises(MessageSerializationError, match="cannot serialize"):
        Response(result=2**64).serialize()


def test_schema_evolution_unknown_keys_ignored_missing_defaults_filled() -> None:
    @message
    @dataclass
    class V1:
        name: str

    @message
    @dataclass
    class V2:
        name: str
        retries: int = 3
        tags: list[str] = field(default_factory=list)

    old = V1(name="job")
    new = V2.deserialize(old.serialize())  # an older sender: defaults fill the gaps
    assert (new.name, new.retries, new.tags, new.message_id) == ("job", 3, [], old.message_id)
    back = V1.deserialize(V2(name="x", retries=9).serialize())  # a newer sender
    assert back.name == "x"
    missing_header = msgpack.packb({"name": "bare"})
    bare = V1.deserialize(missing_header)
    assert bare.priority == 128 and isinstance(bare.message_id, UUID)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "must be a msgpack map"),
        (msgpack.packb({"operation": "x"}), r"WorkRequest\.data: the field is required"),
        (msgpack.packb({"data": "abc"}), r"WorkRequest\.data: expected"),
        (msgpack.packb({"data": [1.0, "x"]}), r"WorkRequest\.data: item: expected float"),
        (msgpack.packb({"data": [], "message_id": b"short"}), r"WorkRequest\.message_id"),
        (msgpack.packb({"data": [], "priority": 999}), r"WorkRequest\.priority"),
        (msgpack.packb({"data": [0.0] * 300}), r"WorkRequest\.data: 300 items exceeds"),
        (msgpack.packb({"data": []}) + b"\x00", "not valid msgpack"),
    ],
)
def test_malformed_input_names_the_problem(payload: bytes, match: str) -> None:
    with pytest.raises(MessageSerializationError, match=match):
        WorkRequest.deserialize(payload)


def test_wrong_nested_types_name_the_path() -> None:
    good = msgpack.unpackb(AllTypes(
        i=1, f=1.0, s="", b=False, raw=b"", nothing=None, numbers=[], pair=(1, ""), mapping={},
        uid=uuid4(), when=datetime(2020, 1, 1), nested=Middle(inner=Inner(n=1)),
        color=Color.RED, level=Level.LOW).serialize())
    cases = {
        "when": ("not a date", r"AllTypes\.when: 'not a date' is not an ISO-8601 datetime"),
        "color": ("green", r"AllTypes\.color: 'green' is not a member of Color"),
        "nested": ({"inner": {"n": "x"}}, r"AllTypes\.nested: Middle\.inner: Inner\.n: expected int"),
        "pair": ([1], r"AllTypes\.pair: expected tuple\[int, str\]"),
        "b": (1, r"AllTypes\.b: expected bool, got int"),
    }
    for key, (value, match) in cases.items():
        with pytest.raises(MessageSerializationError, match=match):
            AllTypes.deserialize(msgpack.packb({**good, key: value}))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_serialization_errors(data: bytes) -> None:
    for cls in (WorkRequest, AllTypes, CalculateResponse):
        try:
            cls.deserialize(data)
        except MessageSerializationError:
            pass


@settings(max_examples=150, deadline=None)
@given(all_types_st, st.data())
def test_mutated_bytes_only_raise_serialization_errors(msg: AllTypes, data: st.DataObject) -> None:
    raw = bytearray(msg.serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        AllTypes.deserialize(bytes(raw))
    except MessageSerializationError:
        pass


@message
@dataclass
class Stamped:
    """Native fields and datetimes only: msgspec encodes the object itself while they are naive."""

    when: datetime
    inner: Inner
    at: datetime | None = None
    items: list[Inner] = field(default_factory=list)


def _reference_bytes(msg: Stamped) -> bytes:
    """msgpack-python's bytes of the type table's map, written out by hand."""
    def inner(x: Inner) -> dict[str, Any]:
        return {"n": x.n, "tags": list(x.tags), "message_id": x.message_id.bytes,
                "priority": x.priority, "correlation_id": None}

    return msgpack.packb({
        "when": msg.when.isoformat(), "inner": inner(msg.inner),
        "at": None if msg.at is None else msg.at.isoformat(), "items": [inner(x) for x in msg.items],
        "message_id": msg.message_id.bytes, "priority": msg.priority,
        "correlation_id": None if msg.correlation_id is None else msg.correlation_id.bytes})


@settings(max_examples=200, deadline=None)
@given(st.builds(Stamped, when=datetimes, inner=inner_st, at=st.none() | datetimes,
                 items=st.lists(inner_st, max_size=2), correlation_id=st.none() | st.uuids()))
def test_datetimes_naive_or_aware_write_the_type_tables_bytes(msg: Stamped) -> None:
    assert Stamped._rg_codec().naive_guard is not None  # the path under test  # type: ignore[attr-defined]
    data = msg.serialize()
    assert data == _reference_bytes(msg)
    back = Stamped.deserialize(data)
    assert back == msg and back.when.tzinfo == msg.when.tzinfo
    assert type(back.inner) is Inner and all(type(x) is Inner for x in back.items)
