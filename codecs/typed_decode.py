"""The typed half of deserialize: msgspec decodes a message's map in C straight into the dict of
its stored values, wherever msgspec's typed decoding is exactly ringgen's conversion (it accepts
the same wire values and yields the same Python values).

Each field gets a mode:

* EXACT: msgspec's value is the stored value (int, float, bool, str, bytes, None, enum, numpy
  scalars but float32, and lists, tuples and dicts of those, bounds included).
* UUID: decoded as a 16-byte bin, made a UUID in Python: msgspec would also take a UUID's text,
  which ringgen's wire format (and so its deserialize) refuses.
* ASCII: a bounded str, whose bound msgspec counts in characters: an ASCII value's characters
  are its UTF-8 bytes, any other value takes the precise check.
* NESTED: a nested message (or an Optional one, a list or tuple of them) of a class without a
  cycle back to itself: decoded by msgspec into that class's own typed map, which its codec's
  `typed_from_wire` then makes the message (so nested maps cost no reference decode).
* CONVERT: decoded as is (`Any`) and converted by the field's own from-wire conversion.

Whatever msgspec refuses goes to the reference decoder, which names the field (or accepts it:
the typed decoder is only ever the stricter of the two).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import numpy as np

from ringgen.schema import header
from ringgen.schema.types import FieldSpec, Kind, TypeNode, read_fields


class Mode(enum.Enum):
    EXACT = "exact"
    UUID = "uuid"
    ASCII = "ascii"
    NESTED = "nested"
    CONVERT = "convert"


_SCALARS: dict[Kind, Any] = {Kind.INT: int, Kind.FLOAT: float, Kind.BOOL: bool, Kind.NONE: None}
_UUID_WIRE = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
_PRIORITY = Annotated[int, msgspec.Meta(ge=header.PRIORITY_MIN, le=header.PRIORITY_MAX)]


def _bounded(tp: Any, node: TypeNode) -> Any:
    return tp if node.max_len is None else Annotated[tp, msgspec.Meta(max_length=node.max_len)]


def exact_type(node: TypeNode) -> Any | None:
    """The msgspec type that decodes exactly what from_wire(node) accepts, to the same value;
    None where there is none (datetimes, numpy scalars, nested messages, bounded text, ...)."""
    k = node.kind
    if k in _SCALARS:
        return _SCALARS[k]
    if k is Kind.STR:
        return str if node.max_len is None else None  # the bound is in UTF-8 bytes
    if k is Kind.BYTES:
        return _bounded(bytes, node)
    if k is Kind.ENUM:
        return node.py if _plain_enum(node.py) else None
    if k is Kind.NUMPY:
        return _numpy_type(np.dtype(node.py))
    inner = [exact_type(a) for a in node.args]
    if any(t is None and a.kind is not Kind.NONE for t, a in zip(inner, node.args, strict=True)):
        return None
    if k is Kind.OPTIONAL:
        return typing.Optional[inner[0]]  # noqa: UP045 (inner may itself be None)
    if k is Kind.LIST:
        return _bounded(list[inner[0]], node)  # type: ignore[valid-type]
    if k is Kind.TUPLE:
        return _bounded(tuple[inner[0], ...], node)  # type: ignore[valid-type]
    if k is Kind.FIXED_TUPLE:
        return tuple[tuple(inner)]  # type: ignore[misc]
    if k is Kind.DICT:
        return dict[inner[0], inner[1]]  # type: ignore[valid-type]
    return None


def _numpy_type(dt: np.dtype) -> Any | None:
    """A numpy scalar field's stored value is a Python int in the dtype's range, a float or a
    bool; a float32 is rounded to float32 (converted in Python)."""
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return Annotated[int, msgspec.Meta(ge=int(info.min), le=int(info.max))]
    if dt == np.float64:
        return float
    return bool if dt == np.bool_ else None


def _plain_enum(cls: type[enum.Enum]) -> bool:
    """An enum that both decoders look up by value alike: values all str or all int, no
    _missing_ hook, not a Flag (whose lookup composes values)."""
    values = [m.value for m in cls]
    return (not issubclass(cls, enum.Flag) and bool(values)
            and all("_missing_" not in vars(c) for c in cls.__mro__ if c.__module__ != "enum")
            and (all(type(v) is str for v in values) or all(type(v) is int for v in values)))


def field_mode(f: FieldSpec) -> tuple[Any, Mode]:
    """A field's msgspec type and how its decoded value becomes the stored one."""
    node = f.node
    if f.name == "priority":  # the header's uint8, whatever the class annotates
        return _PRIORITY, Mode.EXACT
    if node.kind is Kind.UUID:
        return _UUID_WIRE, Mode.UUID
    if node.kind is Kind.OPTIONAL and node.args[0].kind is Kind.UUID:
        return _UUID_WIRE | None, Mode.UUID
    text = node.args[0] if node.kind is Kind.OPTIONAL else node
    if text.kind is Kind.STR and text.max_len is not None:
        bounded = Annotated[str, msgspec.Meta(max_length=text.max_len)]
        return (bounded if text is node else bounded | None), Mode.ASCII
    nested = _nested_type(node)
    if nested is not None:
        return nested, Mode.NESTED
    tp = exact_type(node)
    if tp is None and node.kind is not Kind.NONE:
        return Any, Mode.CONVERT
    return tp, Mode.EXACT


def nested_message(node: TypeNode) -> TypeNode | None:
    """The message node of a NESTED field's type (a message, Optional, list or tuple of one)."""
    inner = node.args[0] if node.kind in (Kind.OPTIONAL, Kind.LIST, Kind.TUPLE) else node
    return inner if inner.kind is Kind.MESSAGE else None


def _nested_type(node: TypeNode) -> Any | None:
    message = nested_message(node)
    if message is None or not _acyclic(message.py, frozenset()):
        return None  # a recursive message's codec may be the one being built: no typed map
    shape = message.py._rg_codec().wire_shape
    if shape is None:
        return None
    if node.kind is Kind.OPTIONAL:
        return typing.Optional[shape]  # noqa: UP045 (a runtime-made type)
    if node.kind is Kind.LIST:
        return _bounded(list[shape], node)  # type: ignore[valid-type]
    if node.kind is Kind.TUPLE:
        return _bounded(tuple[shape, ...], node)  # type: ignore[valid-type]
    return shape


def _acyclic(cls: type, path: frozenset[type]) -> bool:
    if cls in path:
        return False
    path = path | {cls}

    def walk(node: TypeNode) -> bool:
        if node.kind is Kind.MESSAGE:
            return _acyclic(node.py, path)
        return all(walk(a) for a in node.args)

    return all(walk(f.node) for f in read_fields(cls))


def wire_shape(name: str, fields: list[FieldSpec]) -> Any | None:
    """The TypedDict msgspec decodes the message's map into: its declared fields (unknown keys
    left out, fields with a default possibly absent); None where no field gains from it or
    msgspec cannot take a type."""
    modes = [field_mode(f) for f in fields]
    if all(mode is Mode.CONVERT for _, mode in modes):
        return None
    keys = {f.name: (tp if f.required else typing.NotRequired[tp])
            for f, (tp, _) in zip(fields, modes, strict=True)}
    make_shape: Any = typing.TypedDict  # the functional form, with names known only now
    shape = make_shape(f"{name}Wire", keys)
    try:
        msgspec.msgpack.Decoder(shape)
    except (TypeError, ValueError):  # a type msgspec cannot take: the reference decoder only
        return None
    return shape


def typed_decoder(shape: Any) -> Callable[[bytes], dict[str, Any]]:
    decoder: msgspec.msgpack.Decoder[dict[str, Any]] = msgspec.msgpack.Decoder(shape)
    return decoder.decode
