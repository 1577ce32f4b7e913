"""deserialize's typed path (msgspec straight into the field values, codecs/typed_decode.py)
against the reference path (msgspec's untyped decode, then each field's Python conversion):
on any map of any values -- valid, mistyped, out of bounds, missing, unknown -- both return
the same message, to the types of its values, or raise the same MessageSerializationError."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringgen import MaxLen, MessageSerializationError, message
from ringgen.codecs.typed_decode import Mode, field_mode


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@message
@dataclass
class Inner:
    n: int
    tag: Annotated[str, MaxLen(4)] = "x"


@message
@dataclass
class Mixed:
    i: int
    f: float
    ok: bool
    text: Annotated[str, MaxLen(8)]
    raw: Annotated[bytes, MaxLen(4)]
    floats: Annotated[list[float], MaxLen(3)]
    names: tuple[str, ...]
    pair: tuple[int, str]
    table: dict[str, list[int]]
    uid: UUID | None
    color: Color
    level: Level
    small: np.int16
    when: datetime
    inner: Inner
    maybe_text: Annotated[str, MaxLen(5)] | None = None
    nothing: None = None
    inners: list[Inner] = field(default_factory=list)
    extra: float = 1.5


FIELDS = ["i", "f", "ok", "text", "raw", "floats", "names", "pair", "table", "uid", "color",
          "level", "small", "when", "inner", "maybe_text", "nothing", "inners", "extra",
          "message_id", "priority", "correlation_id"]

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=10) | st.binary(max_size=20))
wire_any = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
# Values near each field's type, so that the fast path is taken as often as it is refused.
near = {
    "i": st.integers(-(2**63), 2**64 - 1), "f": st.floats() | st.integers(-(2**63), 2**64 - 1),
    "text": st.text(max_size=12), "raw": st.binary(max_size=6),
    "floats": st.lists(st.floats() | st.integers(-5, 5) | st.booleans(), max_size=4),
    "names": st.lists(st.text(max_size=3), max_size=3),
    "pair": st.lists(st.integers(-3, 3) | st.text(max_size=2), min_size=1, max_size=3),
    "table": st.dictionaries(st.text(max_size=3), st.lists(st.integers(-3, 3), max_size=2), max_size=2),
    "uid": st.none() | st.binary(min_size=15, max_size=17) | st.uuids().map(str),
    "color": st.sampled_from(["red", "blue", "RED", 1]), "level": st.sampled_from([1, 2, 3, "LOW", True]),
    "small": st.integers(-40000, 40000), "when": st.datetimes().map(datetime.isoformat),
    "inner": st.fixed_dictionaries({"n": st.integers(-3, 3)}, optional={"tag": st.text(max_size=6)}),
    "maybe_text": st.none() | st.text(max_size=7), "priority": st.integers(-2, 258),
    "message_id": st.uuids().map(lambda u: u.bytes) | st.binary(max_size=17) | st.uuids().map(str),
    "correlation_id": st.none() | st.uuids().map(lambda u: u.bytes) | st.uuids().map(str),
}


valid_mixed = st.builds(
    Mixed, i=st.integers(-(2**63), 2**64 - 1), f=st.floats(), ok=st.booleans(),
    text=st.text(max_size=8).filter(lambda t: len(t.encode()) <= 8), raw=st.binary(max_size=4),
    floats=st.lists(st.floats(), max_size=3), names=st.lists(st.text(max_size=3)).map(tuple),
    pair=st.tuples(st.integers(-3, 3), st.text(max_size=2)),
    table=st.dictionaries(st.text(max_size=3), st.lists(st.integers(-3, 3), max_size=2), max_size=2),
    uid=st.none() | st.uuids(), color=st.sampled_from(Color), level=st.sampled_from(Level),
    small=st.integers(-(2**15), 2**15 - 1), when=st.datetimes(), inner=st.builds(Inner, n=st.integers(-3, 3)),
    maybe_text=st.none() | st.text(max_size=5).filter(lambda t: len(t.encode()) <= 5),
    priority=st.integers(0, 255), correlation_id=st.none() | st.uuids())


@st.composite
def wire_maps(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid message's map with field `name` missing or replaced by a value near its type
    or any value (or kept: the typed path must then hold all by itself), maybe an unknown key."""
    out: dict[str, Any] = msgpack.unpackb(draw(valid_mixed).serialize(), strict_map_key=False)
    how = draw(st.sampled_from(["keep", "missing", "any", "near", "near", "near"]))
    if how == "missing":
        del out[name]
    elif how != "keep":
        out[name] = draw(wire_any if how == "any" or name not in near else near[name])
    if draw(st.booleans()):
        out[draw(st.text(max_size=5))] = draw(wire_any)  # an unknown key (or a known one again)
    return out


FRESH_ID = re.compile(r"message_id=UUID\('[0-9a-f-]+'\)")


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        msg = decode(data)
    except MessageSerializationError as e:
        return "error", str(e)
    # A nested message missing its id gets a fresh one from each decoder: ids aside there.
    values = {k: (type(v), FRESH_ID.sub("message_id=?", repr(v))) for k, v in vars(msg).items()}
    return "message", values


def typed_reference(cls: type) -> tuple[Any, Any]:
    codec = cls._rg_codec()  # type: ignore[attr-defined]
    return cls.deserialize, codec._ns["reference_deserialize"]  # type: ignore[attr-defined]


def test_typed_path_is_taken() -> None:
    """Mixed gets a typed decoder, and a valid message round-trips through it."""
    msg = Mixed(i=1, f=2.0, ok=True, text="héé", raw=b"ab", floats=[1.0], names=("a",),
                pair=(1, "b"), table={"k": [1]}, uid=None, color=Color.RED, level=Level.HIGH,
                small=np.int16(3), when=datetime(2020, 1, 1), inner=Inner(n=2))
    assert "_typed" in Mixed._rg_codec()._ns  # type: ignore[attr-defined]
    assert Mixed.deserialize(msg.serialize()) == msg


@pytest.mark.parametrize("name", FIELDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_typed_decode_matches_reference(name: str, data: st.DataObject) -> None:
    wire = data.draw(wire_maps(name))
    raw = msgpack.packb(wire, use_bin_type=True)
    typed, reference = typed_reference(Mixed)
    got, want = outcome(typed, raw), outcome(reference, raw)
    if got[0] == want[0] == "message" and "message_id" not in wire:  # each made a fresh id
        assert got[1].pop("message_id")[0] is want[1].pop("message_id")[0] is UUID
    assert got == want


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40) | wire_any.map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_typed_decode_matches_reference_on_any_bytes(data: bytes) -> None:
    typed, reference = typed_reference(Inner)
    assert outcome(typed, data) == outcome(reference, data)


@message
@dataclass
class Tree:
    """Recursive: its nested maps take the reference conversion, never a typed map of itself."""

    n: int
    children: list[Tree] = field(default_factory=list)


def test_nested_messages_take_their_typed_map_unless_recursive() -> None:
    modes = {f.name: field_mode(f)[1] for f in Mixed._rg_codec().fields}  # type: ignore[attr-defined]
    assert modes["inner"] is Mode.NESTED and modes["inners"] is Mode.NESTED
    assert modes["small"] is Mode.EXACT  # a numpy int: msgspec bounds it to the dtype
    tree_modes = {f.name: field_mode(f)[1] for f in Tree._rg_codec().fields}  # type: ignore[attr-defined]
    assert tree_modes["children"] is Mode.CONVERT
    tree = Tree(n=1, children=[Tree(n=2, children=[Tree(n=3)])])
    back = Tree.deserialize(tree.serialize())
    assert back == tree and type(back.children[0].children[0]) is Tree


def test_a_bad_nested_value_is_named_by_the_reference_decoder() -> None:
    msg = Mixed(i=1, f=2.0, ok=True, text="a", raw=b"", floats=[], names=(), pair=(1, "b"), table={},
                uid=None, color=Color.RED, level=Level.LOW, small=np.int16(1), when=datetime(2020, 1, 1),
                inner=Inner(n=2), inners=[Inner(n=3)])
    wire = msgpack.unpackb(msg.serialize())
    wire["inners"][0]["tag"] = "ééé"  # 3 characters, 6 UTF-8 bytes: msgspec's bound lets it by
    with pytest.raises(MessageSerializationError, match=r"Inner\.tag: 6 UTF-8 bytes exceeds"):
        Mixed.deserialize(msgpack.packb(wire))
