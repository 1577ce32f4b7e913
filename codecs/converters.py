"""Per-type conversion functions, built once per field from its TypeNode.

Three conversions exist for every type:

* `checker`: a value given to the constructor -> the stored value (validated, coerced: an int
  given for a float becomes a float, a bounded str is measured in UTF-8 bytes).
* `from_wire`: a value as msgpack decoded it -> the stored value, validated just as strictly.
* `to_wire`: a stored value -> what msgpack packs (UUID -> 16-byte bin, datetime -> ISO text);
  None where the stored value packs as it is, so the hot path does nothing for it.

A conversion raises `FieldValueError` with a message relative to the field; the message class
adds the field name and turns it into the exception its caller expects.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import msgspec
import numpy as np

from ringgen.errors import MessageSerializationError
from ringgen.schema.types import BufferRef, Kind, TypeNode

Conv = Callable[[Any], Any]


class FieldValueError(ValueError):
    """A value that does not fit its field's type; the text is relative to the field."""


def _fail(node: TypeNode, value: Any) -> FieldValueError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return FieldValueError(f"expected {node.describe()}, got {type(value).__name__} {shown}")


def _bounded(node: TypeNode, size: int, unit: str) -> None:
    if node.max_len is not None and size > node.max_len:
        raise FieldValueError(
            f"{size} {unit} exceeds the bound MaxLen({node.max_len}); shorten the value or raise "
            "the bound (large data belongs in a UnifiedBuffer)"
        )


# --- scalars -----------------------------------------------------------------------------------

_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack can carry


def int_checker(node: TypeNode, lo: int, hi: int) -> Conv:
    def check(v: Any) -> int:
        if type(v) is not int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise _fail(node, v)
            v = int(v)
        if not lo <= v <= hi:
            raise FieldValueError(f"{v} is out of range {lo}..{hi} for {node.describe()}")
        return v

    return check


_C_INT64 = (-(2**63), 2**63 - 1)
# The datetimes whose int64 nanoseconds since the epoch a C struct holds (1677..2262).
_C_DATETIME = (datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=timezone.utc),
               datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc))


def _c_int_checker(node: TypeNode) -> Conv:
    check_int = int_checker(node, *_INT_RANGE)

    def check(v: Any) -> int:
        v = check_int(v)
        if not _C_INT64[0] <= v <= _C_INT64[1]:
            raise FieldValueError(
                f"{v} does not fit the int64_t of its C struct (a device kernel's message); "
                "use a value in -2**63..2**63-1, or annotate the field np.uint64 for 0..2**64-1")
        return v

    return check


def _c_datetime_checker(node: TypeNode) -> Conv:
    def check(v: Any) -> datetime:
        if not isinstance(v, datetime):
            raise _fail(node, v)
        aware = v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)
        if not _C_DATETIME[0] <= aware <= _C_DATETIME[1]:
            raise FieldValueError(
                f"{v.isoformat()} does not fit the int64 nanoseconds since 1970 (UTC) of its C "
                f"struct (a device kernel's message); use a datetime from {_C_DATETIME[0]:%Y-%m-%d} "
                f"to {_C_DATETIME[1]:%Y-%m-%d}")
        return v

    return check


def _float_checker(node: TypeNode, round_to: type | None = None) -> Conv:
    def check(v: Any) -> float:
        if type(v) is not float:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise _fail(node, v)
            v = float(v)
        return float(round_to(v)) if round_to is not None else v

    return check


def _bool_checker(node: TypeNode) -> Conv:
    def check(v: Any) -> bool:
        if type(v) is bool:
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        raise _fail(node, v)

    return check


def _str_checker(node: TypeNode) -> Conv:
    bound = node.max_len

    def check(v: Any) -> str:
        if type(v) is not str:
            raise _fail(node, v)
        if v.isascii():  # O(1) in CPython: one byte a char, and no surrogate
            if bound is not None and len(v) > bound:
                _bounded(node, len(v), "UTF-8 bytes")
            return v
        try:
            size = len(v.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise FieldValueError(
                f"{v[e.start:e.end]!r} at index {e.start} is a lone surrogate, which UTF-8 (and so "
                "msgpack and the C struct) cannot carry; pass text as str of valid Unicode, binary "
                "data as bytes (a str decoded with errors='surrogateescape' re-encodes to bytes "
                "with the same errors=)"
            ) from None
        _bounded(node, size, "UTF-8 bytes")
        return v

    return check


def _bytes_checker(node: TypeNode) -> Conv:
    def check(v: Any) -> bytes:
        if type(v) is not bytes:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise _fail(node, v)
            v = bytes(v)
        _bounded(node, len(v), "bytes")
        return v

    return check


def _instance_checker(node: TypeNode, cls: type) -> Conv:
    def check(v: Any) -> Any:
        if not isinstance(v, cls):
            raise _fail(node, v)
        return v

    return check


def _none_checker(node: TypeNode) -> Conv:
    def check(v: Any) -> None:
        if v is not None:
            raise _fail(node, v)

    return check


def _enum_checker(node: TypeNode) -> Conv:
    cls: type[enum.Enum] = node.py

    def check(v: Any) -> enum.Enum:
        try:
            return cls(v)
        except (ValueError, TypeError):
            raise FieldValueError(
                f"{v!r} is not a member of {cls.__name__} ({', '.join(m.name for m in cls)})"
            ) from None

    return check


_NUMPY_BITS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                     np.uint32, np.uint64, np.float32, np.float64, np.bool_)}


def numpy_dtype(node: TypeNode) -> np.dtype:
    """The exact numpy dtype of a numpy-scalar field; SchemaError-free: read_type checked it."""
    return np.dtype(node.py)


def _numpy_checker(node: TypeNode) -> Conv:
    dt = numpy_dtype(node)
    if dt not in _NUMPY_BITS:
        raise FieldValueError(
            f"numpy type {dt.name} is not supported; use one of "
            f"{', '.join(sorted(d.name for d in _NUMPY_BITS))}"
        )
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int_checker(node, int(info.min), int(info.max))
    if dt.kind == "f":
        return _float_checker(node, np.float32 if dt.itemsize == 4 else None)
    return _bool_checker(node)


# --- containers --------------------------------------------------------------------------------

# Element conversions that leave a value alone on the fast path, so a list of them is checked
# with one comprehension and no call per element.
_FAST_ELEMENTS: dict[Kind, type] = {Kind.FLOAT: float, Kind.BOOL: bool}


def _sequence(node: TypeNode, element: Conv, make: type, wire: bool) -> Conv:
    fast = _FAST_ELEMENTS.get(node.args[0].kind)
    accepted = (list,) if wire else (list, tuple)

    def convert(v: Any) -> Any:
        if not isinstance(v, accepted):
            raise _fail(node, v)
        _bounded(node, len(v), "items")
        try:
            if fast is not None:
                out = [x if type(x) is fast else element(x) for x in v]
            else:
                out = [element(x) for x in v]
        except FieldValueError as e:
            raise FieldValueError(f"item: {e}") from None
        return out if make is list else make(out)

    return convert


def _fixed_tuple(node: TypeNode, elements: list[Conv], wire: bool) -> Conv:
    accepted = (list,) if wire else (list, tuple)
    n = len(elements)

    def convert(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, accepted) or len(v) != n:
            raise _fail(node, v)
        try:
            return tuple(f(x) for f, x in zip(elements, v, strict=True))
        except FieldValueError as e:
            raise FieldValueError(f"item: {e}") from None

    return convert


def _dict(node: TypeNode, key: Conv, value: Conv) -> Conv:
    def convert(v: Any) -> dict[Any, Any]:
        if not isinstance(v, dict):
            raise _fail(node, v)
        try:
            return {key(k): value(x) for k, x in v.items()}
        except FieldValueError as e:
            raise FieldValueError(f"entry: {e}") from None

    return convert


def _optional(inner: Conv) -> Conv:
    def convert(v: Any) -> Any:
        return None if v is None else inner(v)

    return convert


def _identity(v: Any) -> Any:
    return v


# --- the three conversions ---------------------------------------------------------------------


def checker(node: TypeNode, c_struct: bool = False) -> Conv:
    """Validate and coerce a value given to a message's constructor. `c_struct`: the message is
    laid out as a C struct (a device kernel's), so an int must fit int64_t and a datetime the
    int64 nanoseconds of the struct, not only what msgpack carries."""
    return _build(node, wire=False, c_struct=c_struct)


def from_wire(node: TypeNode) -> Conv:
    """Turn a decoded msgpack value into the field's stored value, validating it."""
    return _build(node, wire=True)


def _build(node: TypeNode, wire: bool, c_struct: bool = False) -> Conv:
    k = node.kind
    if k is Kind.INT:
        return _c_int_checker(node) if c_struct else int_checker(node, *_INT_RANGE)
    if k is Kind.DATETIME and c_struct:
        return _c_datetime_checker(node)
    if k is Kind.FLOAT:
        return _float_checker(node)
    if k is Kind.BOOL:
        return _bool_checker(node)
    if k is Kind.STR:
        return _str_checker(node)
    if k is Kind.BYTES:
        return _bytes_checker(node)
    if k is Kind.NONE:
        return _none_checker(node)
    if k is Kind.ANY:
        return _identity
    if k is Kind.NUMPY:
        return _numpy_checker(node)
    if k is Kind.ENUM:
        return _enum_checker(node)
    if k is Kind.OPTIONAL:
        return _optional(_build(node.args[0], wire, c_struct))
    if k is Kind.LIST:
        return _sequence(node, _build(node.args[0], wire, c_struct), list, wire)
    if k is Kind.TUPLE:
        return _sequence(node, _build(node.args[0], wire, c_struct), tuple, wire)
    if k is Kind.FIXED_TUPLE:
        return _fixed_tuple(node, [_build(a, wire, c_struct) for a in node.args], wire)
    if k is Kind.DICT:
        return _dict(node, _build(node.args[0], wire), _build(node.args[1], wire))
    if not wire:
        cls = {Kind.UUID: UUID, Kind.DATETIME: datetime, Kind.BUFFER_REF: BufferRef}.get(k, node.py)
        return _instance_checker(node, cls)
    if k is Kind.UUID:
        return _uuid_from_wire(node)
    if k is Kind.DATETIME:
        return _datetime_from_wire(node)
    if k is Kind.BUFFER_REF:
        as_int = int_checker(node, 0, 2**64 - 1)
        return lambda v: BufferRef(as_int(v))
    if k is Kind.MESSAGE:
        return _message_from_wire(node)
    raise AssertionError(f"unhandled kind {k}")


# UUID(bytes=v) for 16 bytes is UUID_OF_BIN(BIN16 + v): made in C by msgspec from them framed as
# a msgpack bin 8, a sixth of UUID(bytes=)'s cost and half of object.__new__ with its two slots
# set, on every message that comes back (two ids each). Compiled codecs inline the expression.
UUID_OF_BIN = msgspec.msgpack.Decoder(UUID).decode
BIN16 = b"\xc4\x10"


def uuid_from_bytes(v: bytes) -> UUID:
    """UUID(bytes=v) for 16 bytes (see UUID_OF_BIN)."""
    return UUID_OF_BIN(BIN16 + v)


def _uuid_from_wire(node: TypeNode) -> Conv:
    def convert(v: Any) -> UUID:
        if type(v) is not bytes or len(v) != 16:
            raise _fail(node, v)
        return uuid_from_bytes(v)

    return convert


def _datetime_from_wire(node: TypeNode) -> Conv:
    def convert(v: Any) -> datetime:
        if type(v) is not str:
            raise _fail(node, v)
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            raise FieldValueError(f"{v!r} is not an ISO-8601 datetime") from None

    return convert


# How deep messages may nest on the wire. Decoding recurses once per level; a bound well
# under Python's recursion limit makes hostile or corrupt input (a map nested hundreds deep)
# a MessageSerializationError instead of a RecursionError.
MAX_NESTING = 100


class NestingTooDeep(MessageSerializationError):
    """Raised at the bound; every level above lets it pass instead of prefixing its field."""


class _Depth(threading.local):
    level = 0


_depth = _Depth()


def _message_from_wire(node: TypeNode) -> Conv:
    cls = node.py

    def convert(v: Any) -> Any:
        level = _depth.level
        if level >= MAX_NESTING:
            raise NestingTooDeep(
                f"{cls.__qualname__}: messages nest deeper than {MAX_NESTING} levels; the bytes are "
                "corrupt or hostile, or the data should be flattened (a list instead of a chain)"
            )
        _depth.level = level + 1
        try:
            return cls._rg_codec().from_dict(v, nested=True)
        finally:
            _depth.level = level

    return convert


def to_wire(node: TypeNode) -> Conv | None:
    """Stored value -> msgpack-ready value; None where the value packs as it is."""
    k = node.kind
    if k is Kind.UUID:
        return _uuid_bytes
    if k is Kind.DATETIME:
        return _iso
    if k is Kind.ENUM:
        return _enum_value
    if k is Kind.BUFFER_REF:
        return _buffer_id
    if k is Kind.MESSAGE:
        cls = node.py
        return lambda v: cls._rg_codec().to_dict(v)
    if k is Kind.OPTIONAL:
        inner = to_wire(node.args[0])
        return None if inner is None else _optional(inner)
    if k in (Kind.LIST, Kind.TUPLE, Kind.FIXED_TUPLE):
        parts = [to_wire(a) for a in node.args]
        if all(p is None for p in parts):
            return None
        if k is Kind.FIXED_TUPLE:
            fs = [p or _identity for p in parts]
            return lambda v: [f(x) for f, x in zip(fs, v, strict=True)]
        element = parts[0]
        assert element is not None
        return lambda v: [element(x) for x in v]
    if k is Kind.DICT:
        kf, vf = (to_wire(a) or _identity for a in node.args)
        if kf is _identity and vf is _identity:
            return None
        return lambda v: {kf(a): vf(b) for a, b in v.items()}
    return None


def _uuid_bytes(v: UUID) -> bytes:
    return v.bytes


def _iso(v: datetime) -> str:
    return v.isoformat()


def _enum_value(v: enum.Enum) -> Any:
    return v.value


def _buffer_id(v: BufferRef) -> int:
    return v.buffer_id


def any_to_wire(v: Any) -> Any:
    """msgpack's `default` hook: values inside `Any` fields that msgpack does not know."""
    if isinstance(v, UUID):
        return v.bytes
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, BufferRef):
        return v.buffer_id
    if isinstance(v, np.generic):
        return v.item()
    if getattr(type(v), "__rg_message__", False):
        return type(v)._rg_codec().to_dict(v)
    raise TypeError(f"cannot serialize {type(v).__name__} {v!r}: no msgpack encoding for it")
