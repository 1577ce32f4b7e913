"""Vectorised conversion between message objects and arrays of their C structs.

`pack(cls, dtype, msgs)` fills one numpy structured array (the generated dtype, the C layout)
column by column; `unpack(cls, arr)` reads it back. Work is per field and per batch, not per
message: a list field of a whole batch is scattered with one fancy-indexed assignment.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import MISSING
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any
from uuid import UUID

import msgspec
import numpy as np

from ringgen.errors import MessageSerializationError
from ringgen.schema import header
from ringgen.schema.types import BufferRef, Kind, TypeNode

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_new = object.__new__


class StructConversionError(MessageSerializationError):
    """A value that its C struct cannot hold, or struct bytes that are no valid message."""


def datetime_to_ns(v: datetime) -> int:
    """int64 ns since the epoch, UTC; a naive datetime is taken as UTC."""
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    delta = v - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_NAIVE_EPOCH = datetime(1970, 1, 1)


def ns_to_datetime(ns: int, naive: int) -> datetime:
    """The datetime of an rg_datetime: naive as it was sent, or aware UTC."""
    return (_NAIVE_EPOCH if naive else _EPOCH) + timedelta(microseconds=ns // 1000)


# --- objects -> structs ------------------------------------------------------------------------


def pack(cls: type, dtype: np.dtype, msgs: Sequence[Any]) -> np.ndarray:
    """An array of `dtype` holding `msgs` (instances of `cls`)."""
    return _message_array(cls, msgs, dtype)


_NO_UUID = bytes(16)


def new_rows(cls: Any, dtype: np.dtype, n: int) -> np.ndarray:
    """`n` rows of `dtype` as `cls()` would make them: each with a fresh UUIDv4 message_id,
    priority 128, no correlation id, every field at its default; a required field is zero (an
    empty str or list). A default made by a factory is made once and shared by the rows."""
    out = np.zeros(n, dtype=dtype)
    out["type_id"] = cls.type_id()
    ids = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40  # version 4
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    out["message_id"] = ids
    for spec in cls._rg_codec().fields:
        if spec.name in ("message_id", "correlation_id") or spec.required:
            continue  # the ids are made above; priority is 128 unless the class says otherwise
        value = spec.default if spec.default is not MISSING else spec.default_factory()
        if value is not None:
            out[spec.name] = _column(spec.node, [value], dtype[spec.name])[0]
    return out


def _message_array(cls: Any, msgs: Sequence[Any], dtype: np.dtype) -> np.ndarray:
    out = np.zeros(len(msgs), dtype=dtype)
    dicts = [m.__dict__ for m in msgs]
    out["type_id"] = cls.type_id()
    for spec in cls._rg_codec().fields:
        values = [d[spec.name] for d in dicts]
        try:
            if spec.name == "correlation_id":  # header: the id, and a flag that it is there
                out["flags"] = [header.FLAG_HAS_CORRELATION if v is not None else 0 for v in values]
                raw = b"".join(_NO_UUID if v is None else v.bytes for v in values)
                out["correlation_id"] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)
            else:
                out[spec.name] = _column(spec.node, values, dtype[spec.name])
        except (OverflowError, ValueError, TypeError) as e:
            if isinstance(e, StructConversionError):
                raise
            raise StructConversionError(f"{cls.__qualname__}.{spec.name}: {e}") from None
    return out


def _column(node: TypeNode, values: list[Any], dtype: np.dtype) -> np.ndarray:
    """An array of `dtype` (one field's C type) holding `values`, one row each."""
    k = node.kind
    if k in (Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.NUMPY, Kind.ENUM, Kind.DATETIME,
             Kind.BUFFER_REF):
        if k is Kind.ENUM:
            values = [v.value for v in values]
        elif k is Kind.DATETIME:  # rg_datetime: (ns, naive)
            values = [(datetime_to_ns(v), v.tzinfo is None) for v in values]
        elif k is Kind.BUFFER_REF:
            values = [v.buffer_id for v in values]
        return np.array(values, dtype=dtype) if values else np.zeros(0, dtype)
    if k is Kind.UUID:
        return np.frombuffer(b"".join(v.bytes for v in values), dtype=np.uint8).reshape(-1, 16)
    if k is Kind.MESSAGE:
        return _message_array(node.py, values, dtype)
    out = np.zeros(len(values), dtype=dtype)
    if k in (Kind.STR, Kind.BYTES):
        data = [v.encode("utf-8") if k is Kind.STR else v for v in values]
        out["len"] = [len(b) for b in data]
        field = dtype["data"]
        width = field.itemsize if k is Kind.STR else field.shape[0]
        padded = b"".join(b.ljust(width, b"\0") for b in data)
        out["data"] = np.frombuffer(padded, dtype=field.base).reshape(out["data"].shape)
    elif k is Kind.OPTIONAL:
        present = np.array([v is not None for v in values], dtype=bool)
        out["present"] = present
        inner = [v for v in values if v is not None]
        out["value"][present] = _column(node.args[0], inner, dtype["value"])
    else:  # list, tuple, fixed tuple: count (not for fixed) + items, scattered in one go
        lengths = np.array([len(v) for v in values], dtype=np.int64)
        if k is not Kind.FIXED_TUPLE:
            out["count"] = lengths
        flat = list(chain.from_iterable(values))
        rows, idx = _positions(lengths)
        out["items"][rows, idx] = _column(node.args[0], flat, dtype["items"].base)
    return out


def _positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, index within the row) of every item of rows of these lengths, in order."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    idx = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, idx


def concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """np.concatenate for struct arrays: numpy's drops the padding of a structured dtype (its
    offsets), and with it the C layout."""
    out = np.empty(sum(len(a) for a in arrays), dtype=arrays[0].dtype)
    start = 0
    for a in arrays:
        out[start:start + len(a)] = a
        start += len(a)
    return out


# --- structs -> objects ------------------------------------------------------------------------


def unpack(cls: type, arr: np.ndarray) -> list[Any]:
    """Message objects from an array of their structs (e.g. popped from a ring)."""
    return _read_message(arr, cls)


def _read_message(col: np.ndarray, cls: Any) -> list[Any]:
    specs = cls._rg_codec().fields
    columns = []
    for spec in specs:
        try:
            if spec.name == "correlation_id":
                has = (col["flags"] & header.FLAG_HAS_CORRELATION) != 0
                ids = _read(col["correlation_id"], TypeNode(Kind.UUID))
                columns.append([u if h else None for u, h in zip(ids, has.tolist(), strict=True)])
            else:
                columns.append(_read(col[spec.name], spec.node))
        except (ValueError, UnicodeDecodeError) as e:
            raise StructConversionError(f"{cls.__qualname__}.{spec.name}: {e}") from None
    names = [s.name for s in specs]
    out = []
    for row in zip(*columns, strict=True):
        o = _new(cls)
        o.__dict__.update(zip(names, row, strict=True))
        out.append(o)
    return out


_UUID_LIST = msgspec.msgpack.Decoder(list[UUID]).decode


def _uuids(col: np.ndarray) -> list[UUID]:
    """The UUIDs of a column of 16-byte ids, made in C: the column framed as a msgpack array
    of 16-byte bins for msgspec (a Python call per UUID costs about five times as much)."""
    n = len(col)
    framed = np.empty((n, 18), dtype=np.uint8)
    framed[:, 0], framed[:, 1] = 0xC4, 16  # bin 8 of 16 bytes
    framed[:, 2:] = np.frombuffer(np.ascontiguousarray(col).tobytes(), dtype=np.uint8).reshape(n, 16)
    return _UUID_LIST(b"\xdd" + n.to_bytes(4, "big") + framed.tobytes())  # array 32


def _read(col: np.ndarray, node: TypeNode) -> list[Any]:
    k = node.kind
    if k in (Kind.INT, Kind.FLOAT, Kind.NUMPY, Kind.BOOL):
        values = col.tolist()
        return [bool(v) for v in values] if k is Kind.BOOL else values
    if k is Kind.ENUM:
        return [_enum_member(node.py, v) for v in col.tolist()]
    if k is Kind.DATETIME:
        return [ns_to_datetime(ns, naive) for ns, naive in col.tolist()]
    if k is Kind.BUFFER_REF:
        return [BufferRef(v) for v in col.tolist()]
    if k is Kind.UUID:
        return _uuids(col)
    if k in (Kind.STR, Kind.BYTES):
        lengths = col["len"].tolist()
        data = np.ascontiguousarray(col["data"])
        width = data.dtype.itemsize if k is Kind.STR else data.shape[-1]
        raw = data.tobytes()
        bound = node.max_len or 0
        if any(n > bound for n in lengths):
            raise ValueError(f"a length {max(lengths)} exceeds the bound MaxLen({bound})")
        chunks = [raw[i * width:i * width + n] for i, n in enumerate(lengths)]
        return [c.decode("utf-8") for c in chunks] if k is Kind.STR else chunks
    if k is Kind.MESSAGE:
        return _read_message(col, node.py)
    if k is Kind.OPTIONAL:
        present = col["present"] != 0
        inner = iter(_read(col["value"][present], node.args[0]))
        return [next(inner) if p else None for p in present.tolist()]
    items = col["items"]
    if k is Kind.FIXED_TUPLE:
        lengths = np.full(len(col), items.shape[1], dtype=np.int64)
    else:
        lengths = col["count"].astype(np.int64)
        if len(lengths) and int(lengths.max()) > items.shape[1]:
            raise ValueError(f"a count {int(lengths.max())} exceeds the bound "
                             f"MaxLen({items.shape[1]})")
    rows, idx = _positions(lengths)
    flat = _read(items[rows, idx], node.args[0])
    make = list if k is Kind.LIST else tuple
    out, start = [], 0
    for n in lengths.tolist():
        out.append(make(flat[start:start + n]))
        start += n
    return out


def _enum_member(cls: type[enum.Enum], value: int) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{value} is not a member of {cls.__name__}") from None
