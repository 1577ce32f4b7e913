"""@message: header fields, immutability, bounds, reply, registry — the seed's examples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import msgpack
import pytest
from schemas.seed_messages import (
    CalculateRequest,
    CalculateResponse,
    LogEvent,
    Response,
    WorkRequest,
)

from ringgen import MaxLen, Message, SchemaError, message


def test_seed_work_request_gets_header_fields() -> None:
    msg = WorkRequest(data=[1, 2, 3])
    assert isinstance(msg.message_id, UUID) and msg.message_id.version == 4
    assert msg.priority == 128 and msg.correlation_id is None
    assert msg.data == [1.0, 2.0, 3.0] and all(type(x) is float for x in msg.data)
    assert msg.operation == "sum"
    assert WorkRequest(data=[1]).message_id != msg.message_id


def test_seed_priority_levels() -> None:
    urgent = WorkRequest(data=[1, 2, 3], priority=255)
    background = WorkRequest(data=[1, 2, 3], priority=32)
    assert (urgent.priority, background.priority) == (255, 32)
    for bad in (-1, 256, 1000):
        with pytest.raises(ValueError, match=r"WorkRequest\.priority.*out of range 0\.\.255"):
            WorkRequest(data=[1], priority=bad)
    with pytest.raises(ValueError, match="priority"):
        WorkRequest(data=[1], priority="high")  # type: ignore[arg-type]


def test_seed_correlation_and_reply() -> None:
    request = CalculateRequest(expression="2 + 2")
    response = CalculateResponse(result=4.0, correlation_id=request.message_id)
    assert response.correlation_id == request.message_id
    replied = request.reply(CalculateResponse, result=4.0)
    assert replied.correlation_id == request.message_id
    assert replied.priority == request.priority and replied.message_id != request.message_id
    assert request.reply(CalculateResponse, result=1.0, priority=7).priority == 7


def test_declared_header_fields_are_kept_in_place() -> None:
    names = [f.name for f in dataclasses.fields(CalculateResponse)]
    assert names == ["result", "success", "error", "message_id", "priority", "correlation_id"]
    assert CalculateResponse(result=1).error is None


def test_log_event_timestamp_and_any_result() -> None:
    event = LogEvent(level="INFO", message="Started")
    assert isinstance(event.timestamp, float)
    ok = Response(success=True, result={"rows": [1, 2], "name": "x"})
    failed = Response(success=False, error="Internal error", error_code=500)
    assert ok.result == {"rows": [1, 2], "name": "x"} and failed.error_code == 500


def test_messages_are_immutable() -> None:
    msg = WorkRequest(data=[1.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.operation = "max"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.priority = 1  # type: ignore[misc]


def test_constructor_copies_lists() -> None:
    data = [1.0, 2.0]
    msg = WorkRequest(data=data)
    data.append(3.0)
    assert msg.data == [1.0, 2.0]


def test_bounds_name_field_bound_and_size() -> None:
    with pytest.raises(ValueError, match=r"WorkRequest\.data: 257 items exceeds the bound MaxLen\(256\)"):
        WorkRequest(data=[0.0] * 257)
    with pytest.raises(ValueError, match=r"WorkRequest\.operation: 17 UTF-8 bytes exceeds.*MaxLen\(16\)"):
        WorkRequest(data=[], operation="x" * 17)
    # UTF-8 bytes, not characters: 8 two-byte characters are 16 bytes and fit; 9 do not
    WorkRequest(data=[], operation="é" * 8)
    with pytest.raises(ValueError, match="18 UTF-8 bytes"):
        WorkRequest(data=[], operation="é" * 9)


def test_wrong_types_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match=r"WorkRequest\.data: item: expected float, got str"):
        WorkRequest(data=[1.0, "x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"WorkRequest\.data: expected"):
        WorkRequest(data=3)  # type: ignore[arg-type]


def test_plain_class_and_bare_dataclass_forms() -> None:
    @message
    class Plain:
        x: int
        label: Annotated[str, MaxLen(4)] = "p"

    @message()
    @dataclass
    class Called:
        y: float = 0.5

    p = Plain(3)
    assert (p.x, p.label, p.priority) == (3, "p", 128)
    assert isinstance(p, Message) and isinstance(Called(), Message)
    assert Plain.deserialize(p.serialize()) == p


def test_a_slotted_dataclass_is_refused_with_the_fix() -> None:
    with pytest.raises(SchemaError, match=r"Slotted declares __slots__.*remove slots=True"):
        @message
        @dataclass(slots=True)
        class Slotted:
            seq: int = 0


def test_user_post_init_runs_after_validation() -> None:
    seen = []

    @message
    @dataclass
    class Checked:
        n: int

        def __post_init__(self) -> None:
            seen.append(self.n)

    Checked(n=True + 1)
    assert seen == [2]


def test_same_named_classes_of_two_modules_are_different_types() -> None:
    def make(module: str) -> type:
        cls = type("Request", (), {"__annotations__": {"x": int}, "__module__": module,
                                   "__qualname__": "Request"})
        return message(cls)

    a, b = make("mod_a"), make("mod_b")
    assert (a.qualified_name(), b.qualified_name()) == ("mod_a.Request", "mod_b.Request")
    assert a.type_id() != b.type_id()


def test_subclass_messages_get_their_own_codec() -> None:
    @message
    @dataclass
    class Base:
        a: int = 1

    # A subclass of a (frozen) message: @message alone, or @dataclass(frozen=True) under it.
    @message
    class Derived(Base):
        b: int = 2

    @message
    @dataclass(frozen=True)
    class Derived2(Base):
        c: int = 3

    Base().serialize()  # compile the parent's codec first
    d = Derived()
    assert Derived.deserialize(d.serialize()) == d
    assert list(msgpack.unpackb(d.serialize())) == ["a", "message_id", "priority",
                                                     "correlation_id", "b"]
    assert Derived2.deserialize(Derived2().serialize()).c == 3


def test_unsupported_annotations_are_schema_errors() -> None:
    @message
    @dataclass
    class Bad:
        x: int | str

    with pytest.raises(SchemaError, match=r"Bad\.x: unions other than `X \| None`"):
        Bad(x=1)
    with pytest.raises(SchemaError, match="MaxLen bounds str"):
        @message
        @dataclass
        class BadBound:
            x: Annotated[int, MaxLen(3)]

        BadBound(x=1)
