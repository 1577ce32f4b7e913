"""The msgpack codec's engines and guards: msgspec writes msgpack-python's bytes; lone surrogates,
deep nesting and fresh ids; the compiled constructor keeps the dataclass's semantics."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any
from uuid import UUID

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringgen import BufferRef, MaxLen, MessageSerializationError, ValidationError, message


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@message
@dataclass
class Leaf:
    n: int
    label: str = ""


@message
@dataclass
class Native:
    """Every field a value msgspec encodes as msgpack-python does: the object itself is encoded."""

    i: int
    f: float
    s: Annotated[str, MaxLen(64)]
    raw: bytes
    flags: list[bool]
    pair: tuple[int, str]
    by_key: dict[int, list[float]]
    uid: UUID | None
    mode: Mode
    small: np.int16
    leaf: Leaf
    leaves: list[Leaf] = field(default_factory=list)


@message
@dataclass
class Converted:
    """Fields stored other than as msgpack carries them: encoded from the codec's dict."""

    when: datetime
    ref: BufferRef
    leaf: Leaf
    note: str = ""


leaf_st = st.builds(Leaf, n=st.integers(-(2**63), 2**64 - 1), label=st.text(max_size=40))
native_st = st.builds(
    Native, i=st.integers(-(2**63), 2**64 - 1), f=st.floats(allow_nan=False),
    s=st.text(max_size=16), raw=st.binary(max_size=300), flags=st.lists(st.booleans(), max_size=3),
    pair=st.tuples(st.integers(-300, 70000), st.text(max_size=40)),
    by_key=st.dictionaries(st.integers(-(2**40), 2**40), st.lists(st.floats(allow_nan=False), max_size=2),
                           max_size=3),
    uid=st.none() | st.uuids(), mode=st.sampled_from(Mode), small=st.integers(-(2**15), 2**15 - 1),
    leaf=leaf_st, leaves=st.lists(leaf_st, max_size=3), priority=st.integers(0, 255),
    correlation_id=st.none() | st.uuids(),
)
converted_st = st.builds(
    Converted, when=st.datetimes() | st.datetimes(timezones=st.just(timezone.utc)),
    ref=st.builds(BufferRef, st.integers(0, 2**64 - 1)), leaf=leaf_st, note=st.text(max_size=300),
)


def _msgpack_python(msg: Any) -> bytes:
    """The reference: msgpack-python packing the codec's wire dict."""
    return msgpack.packb(type(msg)._rg_codec().to_dict(msg))


@settings(max_examples=150, deadline=None)
@given(st.one_of(native_st, converted_st))
def test_msgspec_writes_the_bytes_of_msgpack_python(msg: Any) -> None:
    assert type(msg)._rg_codec().native is (type(msg) is Native)
    data = msg.serialize()
    assert data == _msgpack_python(msg)
    assert type(msg).deserialize(data) == msg


def test_lone_surrogate_is_refused_at_construction_saying_what_to_do() -> None:
    with pytest.raises(ValidationError, match=r"Leaf\.label: .*lone surrogate.*binary data as bytes"):
        Leaf(n=1, label="ok\ud800")
    with pytest.raises(ValidationError, match="lone surrogate"):
        Native(i=0, f=0.0, s="\udc80", raw=b"", flags=[], pair=(0, ""), by_key={}, uid=None,
               mode=Mode.FAST, small=0, leaf=Leaf(n=0))
    assert Leaf(n=1, label="ünïcode ✓").label == "ünïcode ✓"


@message
@dataclass
class Loose:
    anything: Any = None


def test_lone_surrogate_inside_any_is_a_serialization_error() -> None:
    with pytest.raises(MessageSerializationError, match="lone surrogate"):
        Loose(anything=["\ud800"]).serialize()


@message
@dataclass
class Chain:
    value: int = 0
    child: Chain | None = None


def _chain_bytes(depth: int) -> bytes:
    wire: dict[str, Any] | None = None
    for i in range(depth):
        wire = {"value": i, "child": wire}
    return msgpack.packb(wire)


def test_deep_nesting_is_a_serialization_error_not_recursion() -> None:
    with pytest.raises(MessageSerializationError, match="nest deeper than 100 levels"):
        Chain.deserialize(_chain_bytes(400))
    back = Chain.deserialize(_chain_bytes(100))
    depth = 0
    while back.child is not None:
        back, depth = back.child, depth + 1
    assert depth == 99


def test_message_ids_are_rfc4122_version_4_and_differ_after_fork() -> None:
    ids = {Leaf(n=0).message_id for _ in range(20000)}
    assert len(ids) == 20000
    assert all(u.version == 4 and u.variant == "specified in RFC 4122" for u in ids)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its next ids; it must not repeat the parent's stream
        os.close(read_end)
        os.write(write_end, b"".join(Leaf(n=0).message_id.bytes for _ in range(100)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(Leaf(n=0).message_id.bytes for _ in range(100))
    assert len(child) == 1600
    assert {child[i:i + 16] for i in range(0, 1600, 16)}.isdisjoint(
        parent[i:i + 16] for i in range(0, 1600, 16))


@message
@dataclass
class Checked:
    values: list[float]
    name: Annotated[str, MaxLen(4)] = "abc"
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append(self.name)


def test_compiled_constructor_keeps_dataclass_semantics() -> None:
    Checked(values=[1.0])  # the first construction compiles the codec
    source = [1, 2.5]
    msg = Checked(source, "ab")
    assert msg.values == [1.0, 2.5] and type(msg.values[0]) is float
    source.append(3.0)
    assert msg.values == [1.0, 2.5]  # a copy: the message never shares the caller's list
    assert msg.seen == ["ab"]  # the user's __post_init__ ran, once
    assert Checked([], message_id=msg.message_id).message_id == msg.message_id
    with pytest.raises(ValidationError, match=r"Checked\.name: 5 UTF-8 bytes exceeds"):
        Checked([], "abcde")
    with pytest.raises(ValidationError, match=r"Checked\.name: 5 UTF-8 bytes exceeds"):
        Checked([], "abcé")
    with pytest.raises(ValidationError, match=r"Checked\.priority"):
        Checked([], priority=256)
    with pytest.raises(ValidationError, match=r"Checked\.message_id"):
        Checked([], message_id="not a uuid")
    with pytest.raises(TypeError):
        Checked([], "ab", [], "positional header")  # type: ignore[call-arg]
    assert Checked.__init__.__qualname__ == "Checked.__init__"


@message
@dataclass
class Scalars:
    floats: Annotated[list[float], MaxLen(3)]
    ints: list[int] = field(default_factory=list)
    flags: tuple[bool, ...] = ()


def test_constructor_fast_path_for_lists_of_scalars_keeps_every_check() -> None:
    """A list (or tuple) of exact floats, bools or in-range ints is stored without a call per
    item; anything else takes the full check, with the same outcome as before."""
    source = [1.0, 2.0]
    msg = Scalars(source, [1, 2**64 - 1], (True,))
    assert msg.floats == source and msg.floats is not source and msg.flags == (True,)
    assert Scalars((1, 2.5)).floats == [1.0, 2.5]  # a tuple for a list: converted, a list stored
    assert type(Scalars([], flags=[False]).flags) is tuple
    with pytest.raises(ValidationError, match=r"Scalars\.floats: item: expected float, got bool"):
        Scalars([1.0, True])
    with pytest.raises(ValidationError, match=r"Scalars\.floats: 4 items exceeds the bound MaxLen\(3\)"):
        Scalars([1.0] * 4)
    with pytest.raises(ValidationError, match=r"Scalars\.ints: item: 18446744073709551616 is out of range"):
        Scalars([], [0, 2**64])
    with pytest.raises(ValidationError, match=r"Scalars\.ints: item: expected int, got bool"):
        Scalars([], [1, False])
    with pytest.raises(ValidationError, match=r"Scalars\.flags: item: expected bool, got int"):
        Scalars([], flags=(1,))
