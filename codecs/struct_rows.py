"""One message <-> the bytes of its C struct, with Python's `struct` module.

struct_columns.py converts whole batches column by column with numpy, which costs a fixed
~15 us per call; a request or a receive of one message would pay it every time. This codec
flattens the struct (the generated dtype gives every offset) into one `struct.Struct` format,
explicit padding included, so one message packs or unpacks with a single C call plus one small
Python function per field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import repeat
from typing import Any

import numpy as np

from ringgen.codecs.converters import uuid_from_bytes
from ringgen.codecs.struct_columns import datetime_to_ns, ns_to_datetime
from ringgen.errors import MessageSerializationError
from ringgen.schema import header
from ringgen.schema.types import BufferRef, Kind, TypeNode

_new = object.__new__
Pack = Callable[[Any, list[Any]], None]  # value -> flat values appended to the list
Unpack = Callable[[tuple[Any, ...], int], tuple[Any, int]]  # (flat, index) -> (value, next index)
Ids = Callable[[Any], tuple[Any, Any]]  # struct bytes -> (message_id, correlation_id or None)


class _Flat:
    """The struct format of one C type, and how its Python value maps to the flat values."""

    def __init__(self, fmt: str, pack: Pack, unpack: Unpack, zeros: list[Any], plain: bool = False):
        self.fmt, self.pack, self.unpack, self.zeros = fmt, pack, unpack, zeros
        self.plain = plain  # one flat value, the Python value itself: lists of it copy in bulk


def _scalar(code: str, to_flat: Callable[[Any], Any] | None = None,
            from_flat: Callable[[Any], Any] | None = None, zero: Any = 0) -> _Flat:
    if to_flat is None:
        def pack(v: Any, out: list[Any]) -> None:
            out.append(v)
    else:
        def pack(v: Any, out: list[Any]) -> None:
            out.append(to_flat(v))
    if from_flat is None:
        def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
            return flat[i], i + 1
    else:
        def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
            return from_flat(flat[i]), i + 1
    return _Flat(code, pack, unpack, [zero], plain=to_flat is None and from_flat is None)


def _uuid() -> _Flat:
    return _scalar("16s", lambda u: u.bytes, uuid_from_bytes, bytes(16))


def _datetime() -> _Flat:
    """rg_datetime: int64 ns, a uint8 `naive`, 7 bytes of padding."""

    def pack(v: Any, out: list[Any]) -> None:
        out.append(datetime_to_ns(v))
        out.append(v.tzinfo is None)

    def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
        return ns_to_datetime(flat[i], flat[i + 1]), i + 2

    return _Flat("qB7x", pack, unpack, [0, 0])


def _padded(fields: list[tuple[int, _Flat]], itemsize: int) -> tuple[str, list[Any]]:
    """The format of members at their offsets, with 'x' for every padding byte."""
    fmt, cursor, zeros = [], 0, []
    for offset, flat in fields:
        if offset > cursor:
            fmt.append(f"{offset - cursor}x")
        fmt.append(flat.fmt)
        zeros += flat.zeros
        cursor = offset + struct.calcsize("<" + flat.fmt)
    if itemsize > cursor:
        fmt.append(f"{itemsize - cursor}x")
    return "".join(fmt), zeros


def _enum_member(cls: Any) -> Callable[[int], Any]:
    def convert(v: int) -> Any:
        try:
            return cls(v)
        except ValueError:
            raise MessageSerializationError(f"{v} is not a member of {cls.__name__}") from None
    return convert


def flat_type(node: TypeNode, dtype: np.dtype) -> _Flat:
    """The flat form of a field of type `node` whose C layout numpy describes as `dtype`."""
    k = node.kind
    if k in (Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.NUMPY):
        code = dtype.char if dtype.char != "l" else "q"
        if k is Kind.BOOL or dtype.char == "?":
            return _scalar("?", None, bool, False)
        return _scalar({"L": "Q"}.get(code, code), zero=0.0 if dtype.kind == "f" else 0)
    if k is Kind.ENUM:
        return _scalar("i", lambda e: e.value, _enum_member(node.py))
    if k is Kind.DATETIME:
        return _datetime()
    if k is Kind.BUFFER_REF:
        return _scalar("Q", lambda r: r.buffer_id, BufferRef)
    if k is Kind.UUID:
        return _uuid()
    if k is Kind.MESSAGE:
        return message_flat(node.py, dtype)
    if k in (Kind.STR, Kind.BYTES):
        return _text(node, dtype)
    if k is Kind.OPTIONAL:
        return _optional(node, dtype)
    return _sequence(node, dtype)


def _text(node: TypeNode, dtype: np.dtype) -> _Flat:
    data = dtype.fields["data"][0]  # type: ignore[index]
    n = data.itemsize
    is_str = node.kind is Kind.STR
    fmt, _ = _padded([(dtype.fields["len"][1], _scalar("I")),  # type: ignore[index]
                      (dtype.fields["data"][1], _scalar(f"{n}s"))], dtype.itemsize)  # type: ignore[index]

    def pack(v: Any, out: list[Any]) -> None:
        raw = v.encode() if is_str else v
        out.append(len(raw))
        out.append(raw)

    def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
        length, raw = flat[i], flat[i + 1]
        if length > n:
            raise MessageSerializationError(f"a length {length} exceeds the bound MaxLen({n})")
        return (raw[:length].decode() if is_str else raw[:length]), i + 2

    return _Flat(fmt, pack, unpack, [0, b""])


def _optional(node: TypeNode, dtype: np.dtype) -> _Flat:
    inner = flat_type(node.args[0], dtype.fields["value"][0])  # type: ignore[index]
    fmt, zeros = _padded([(0, _scalar("B")), (dtype.fields["value"][1], inner)],  # type: ignore[index]
                         dtype.itemsize)
    width = len(inner.zeros)

    def pack(v: Any, out: list[Any]) -> None:
        if v is None:
            out.extend(zeros)
        else:
            out.append(1)
            inner.pack(v, out)

    def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
        if not flat[i]:
            return None, i + 1 + width
        return inner.unpack(flat, i + 1)

    return _Flat(fmt, pack, unpack, zeros)


def _sequence(node: TypeNode, dtype: np.dtype) -> _Flat:
    items_dtype, items_offset = dtype.fields["items"][:2]  # type: ignore[index]
    capacity = items_dtype.shape[0]
    item = flat_type(node.args[0], items_dtype.base)
    fixed = node.kind is Kind.FIXED_TUPLE
    make = list if node.kind is Kind.LIST else tuple
    members = [] if fixed else [(0, _scalar("I"))]
    stride = items_dtype.base.itemsize
    members += [(items_offset + j * stride, item) for j in range(capacity)]
    fmt, zeros = _padded(members, dtype.itemsize)
    width = len(item.zeros)
    simple = item.plain
    head = 0 if fixed else 1

    def pack(v: Any, out: list[Any]) -> None:
        if not fixed:
            out.append(len(v))
        if simple:
            out.extend(v)
        else:
            for x in v:
                item.pack(x, out)
        out.extend(zeros[head + len(v) * width:])

    def unpack(flat: tuple[Any, ...], i: int) -> tuple[Any, int]:
        count = capacity if fixed else flat[i]
        if count > capacity:
            raise MessageSerializationError(f"a count {count} exceeds the bound MaxLen({capacity})")
        i += head
        end = i + capacity * width
        if simple:
            return make(flat[i:i + count]), end
        values = []
        for _ in repeat(None, count):
            value, i = item.unpack(flat, i)
            values.append(value)
        return make(values), end

    return _Flat(fmt, pack, unpack, zeros)


def _members(cls: Any, dtype: np.dtype) -> tuple[list[str], list[tuple[int, str, _Flat]]]:
    """The field names in declaration order, and (offset, name, flat form) of every struct
    member (header members included) in offset order."""
    fields = dtype.fields
    assert fields is not None
    specs = cls._rg_codec().fields
    members: list[tuple[int, str, _Flat]] = [
        (m.offset, m.name, _uuid() if m.c_type == "rg_uuid" else _scalar(m.struct_code))
        for m in header.MEMBERS]
    by_name = {s.name: s for s in specs}
    for name in fields:
        if name not in header.MEMBER_NAMES:
            members.append((fields[name][1], name, flat_type(by_name[name].node, fields[name][0])))
    members.sort(key=lambda m: m[0])
    return [s.name for s in specs], members


def message_flat(cls: Any, dtype: np.dtype) -> _Flat:
    """A whole message: header members, then its fields, as the generated struct lays them."""
    names, members = _members(cls, dtype)
    return _message_flat(cls, names, members, dtype.itemsize)


def _message_flat(cls: Any, names: list[str], members: list[tuple[int, str, _Flat]],
                  itemsize: int) -> _Flat:
    fmt, zeros = _padded([(offset, flat) for offset, _, flat in members], itemsize)
    type_id = cls.type_id()
    body = [(name, flat) for _, name, flat in members if name not in header.MEMBER_NAMES]

    def pack(m: Any, out: list[Any]) -> None:  # the header members in header.MEMBERS order
        d = m.__dict__
        corr = d["correlation_id"]
        out.append(d["message_id"].bytes)
        out.append(b"" if corr is None else corr.bytes)
        out.append(type_id)
        out.append(d["priority"])
        out.append(0 if corr is None else header.FLAG_HAS_CORRELATION)
        for name, flat in body:
            flat.pack(d[name], out)

    unpack: Unpack = _message_unpacker(cls, names, members)
    return _Flat(fmt, pack, unpack, zeros)


def _message_unpacker(cls: Any, names: list[str], members: list[tuple[int, str, _Flat]],
                      ids: Ids | None = None) -> Any:
    """The unpack of a whole message as one generated function: every member's place among
    the flat values is fixed, so each field is one line with a constant index and no loop or
    dict runs per message (this is on the path of every response a request waits for).

    With `ids` (the native codec's, which makes both header UUIDs in one C call), the function
    is `unpack(f, data)`, `data` the struct's bytes, for a whole top-level message."""
    ns: dict[str, Any] = {"new": _new, "cls": cls, "uuid": uuid_from_bytes, "ids": ids}
    index: dict[str, int] = {}
    i = 0
    for _, name, flat in members:
        index[name] = i
        i += len(flat.zeros)
    at: dict[str, str] = {}
    for _, name, flat in members:
        k = index[name]
        if ids is not None and name in ("message_id", "correlation_id"):
            at[name] = name  # from the one ids() call below
        elif name == "message_id":
            at[name] = f"uuid(f[i + {k}])"
        elif name == "correlation_id":
            at[name] = (f"uuid(f[i + {k}]) if f[i + {index['flags']}] & "
                        f"{header.FLAG_HAS_CORRELATION} else None")
        elif flat.plain:
            at[name] = f"f[i + {k}]"
        else:
            ns[f"unpack_{name}"] = flat.unpack
            at[name] = f"unpack_{name}(f, i + {k})[0]"
    if ids is None:
        head, tail = ["def unpack(f, i):"], f"    return o, i + {i}"
    else:
        head = ["def unpack(f, data):", "    i = 0", "    message_id, correlation_id = ids(data)"]
        tail = "    return o"
    lines = [*head, "    o = new(cls)", "    d = o.__dict__",
             *(f"    d[{n!r}] = {at[n]}" for n in names), tail]
    exec(compile("\n".join(lines), f"<ringgen struct unpack {cls.__qualname__}>", "exec"), ns)
    return ns["unpack"]


class RowCodec:
    """pack/unpack of single messages of one class, as bytes of its C struct. With `ids` (the
    native codec's header UUIDs, NativeSlots.ids), unpack makes them in C."""

    def __init__(self, cls: Any, dtype: np.dtype, ids: Ids | None = None):
        self.cls, self.dtype = cls, dtype
        names, members = _members(cls, dtype)  # once: the flat form and the top unpack share them
        self._flat = _message_flat(cls, names, members, dtype.itemsize)
        self._struct = struct.Struct("<" + self._flat.fmt)
        assert self._struct.size == dtype.itemsize, (self._struct.size, dtype.itemsize)
        self._top = None if ids is None else _message_unpacker(cls, names, members, ids)
        self.flat_values = len(self._flat.zeros)  # how many values struct.unpack makes

    def pack(self, msg: Any) -> bytes:
        out: list[Any] = []
        self._flat.pack(msg, out)
        try:
            return self._struct.pack(*out)
        except struct.error as e:
            raise MessageSerializationError(
                f"{self.cls.__qualname__}: a value does not fit its C type ({e})") from None

    def unpack(self, data: bytes | memoryview) -> Any:
        try:
            if self._top is not None:
                return self._top(self._struct.unpack(data), data)
            return self._flat.unpack(self._struct.unpack(data), 0)[0]
        except UnicodeDecodeError as e:
            raise MessageSerializationError(f"{self.cls.__qualname__}: invalid UTF-8 ({e})") from None
