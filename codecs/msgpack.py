"""One message class's codec: its fields' conversions compiled into three straight-line functions.

`to_dict`, `from_dict` and `validate` are generated as Python source once per class (on first
use) and compiled with `exec`: the hot path of every host message is then a dict display and a
few calls, with no per-call reflection over the fields.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from ringgen.codecs import converters
from ringgen.errors import MessageSerializationError, ValidationError
from ringgen.schema import header
from ringgen.schema.types import MISSING, FieldSpec, Kind, TypeNode, read_fields

_MISSING = MISSING
# The header's priority is a uint8 on the device.
_PRIORITY_CHECK = converters.int_checker(TypeNode(Kind.INT), header.PRIORITY_MIN, header.PRIORITY_MAX)
_PRIORITY_GUARD = f"type(v) is int and {header.PRIORITY_MIN} <= v <= {header.PRIORITY_MAX}"


def _packer_default(v: Any) -> Any:
    return converters.any_to_wire(v)


class _ThreadPackers(threading.local):
    """One reusable msgpack.Packer per thread: a Packer is not thread-safe, and making one
    per call costs as much as packing a small message."""

    def __init__(self) -> None:
        self.pack = msgpack.Packer(default=_packer_default, autoreset=True).pack


_packers = _ThreadPackers()


class MessageCodec:
    """Compiled serializer, deserializer and validator of one @message class."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields = read_fields(cls)
        self.float32 = any(has_float32(f.node) for f in self.fields)
        self._wire_nodes = {f.name: f.node for f in self.fields}
        self.to_dict: Callable[[Any], dict[str, Any]]
        self.from_dict: Callable[..., Any]
        self.validate: Callable[[Any], None]
        self._serialize: Callable[[Any], bytes]
        self._deserialize: Callable[[bytes], Any]
        self._ns: dict[str, Any] = {}  # the compiled functions' globals
        self._compile()

    # -- public operations (replaced on the class by the compiled functions, see install) --

    def serialize(self, msg: Any) -> bytes:
        return self._serialize(msg)

    def deserialize(self, data: bytes) -> Any:
        return self._deserialize(data)

    def check_c_ranges(self) -> None:
        """From now on the constructor also refuses what the class's C struct cannot hold (an
        int beyond int64_t, a datetime beyond int64 ns), naming the field: called for every
        message a generated package lays out, so that such a value fails where it is made, not
        at send."""
        for i, f in enumerate(self.fields):
            if f.name != "priority":
                self._ns[f"_c{i}"] = converters.checker(f.node, c_struct=True)

    def install(self) -> None:
        """Put the compiled functions on the class itself: no codec lookup per call."""
        self.cls.serialize = self._serialize  # type: ignore[attr-defined]
        self.cls.deserialize = staticmethod(self._deserialize)  # type: ignore[attr-defined]

    def _malformed(self, err: Exception) -> MessageSerializationError:
        return MessageSerializationError(
            f"{self.cls.__qualname__}: the bytes are not valid msgpack ({type(err).__name__}: "
            f"{err}); pass exactly what serialize() produced"
        )

    def _unpackable(self, err: Exception) -> MessageSerializationError:
        return MessageSerializationError(
            f"{self.cls.__qualname__}: cannot serialize: {err}; msgpack carries None, bool, int "
            "(-2**63..2**64-1), float, str, bytes, list, tuple, dict and ringgen's own types"
        )

    def _write_float32(self, msg: Any) -> bytes:
        out: list[bytes] = []
        self.write_map(self.to_dict(msg), out, msgpack.Packer(default=_packer_default))
        return b"".join(out)

    # -- float32: msgpack.packb writes every float as float64, so such messages are written
    #    piecewise, with the float32 values encoded as msgpack's float 32 (0xca).

    def write_map(self, wire: dict[str, Any], out: list[bytes], packer: msgpack.Packer) -> None:
        out.append(packer.pack_map_header(len(wire)))
        for name, value in wire.items():
            out.append(packer.pack(name))
            _write_value(self._wire_nodes[name], value, out, packer)

    # -- code generation --------------------------------------------------------------------

    def _compile(self) -> None:
        ns: dict[str, Any] = {
            "_cls": self.cls,
            "_new": object.__new__,
            "_M": _MISSING,
            "_FVE": converters.FieldValueError,
            "_MSE": MessageSerializationError,
            "_bad": self._decode_error,
            "_invalid": self._construct_error,
            "_not_map": self._not_a_map,
            "_malformed": self._malformed,
            "_unpackable": self._unpackable,
            "_tl": _packers,
            "_unpackb": msgpack.unpackb,
            "_write_f32": self._write_float32,
            "_uuid": converters.uuid_from_bytes,
            "_types_in": _types_in,
        }
        to_items, from_lines, check_lines = [], [], []
        for i, f in enumerate(self.fields):
            key = repr(f.name)
            to_items.append(f"{key}: {self._wire_expr(f, i, ns)}")
            from_lines += self._decode_lines(f, i, ns)
            ns[f"_c{i}"] = _PRIORITY_CHECK if f.name == "priority" else converters.checker(f.node)
            check_lines += [
                f"    try: d[{key}] = _c{i}(d[{key}])",
                f"    except _FVE as e: raise _invalid({key}, e) from None",
            ]
        decode_body = [
            "    if type(w) is not dict: raise _not_map(w, nested)",
            "    o = _new(_cls)",
            "    od = o.__dict__",
            *from_lines,
            "    return o",
        ]
        # Maps with other than str keys need strict_map_key=False; it costs a little per call.
        unpack_options = "" if self._str_keys_only() else ", strict_map_key=False"
        pack = "_write_f32(m)" if self.float32 else "_tl.pack({" + ", ".join(to_items) + "})"
        src = [
            "def serialize(m):",
            "    d = m.__dict__",
            f"    try: return {pack}",
            "    except (TypeError, ValueError, OverflowError) as e: raise _unpackable(e) from None",
            "def deserialize(data):",
            f"    try: w = _unpackb(data{unpack_options})",
            "    except Exception as e: raise _malformed(e) from None",
            "    nested = False",
            *decode_body,
            "def to_dict(m):",
            "    d = m.__dict__",
            "    return {" + ", ".join(to_items) + "}",
            "def from_dict(w, nested=False):",
            *decode_body,
            "def validate(m):",
            "    d = m.__dict__",
            *(check_lines or ["    pass"]),
        ]
        exec(compile("\n".join(src), f"<ringgen codec {self.cls.__qualname__}>", "exec"), ns)
        self._ns = ns
        self.to_dict, self.from_dict, self.validate = ns["to_dict"], ns["from_dict"], ns["validate"]
        self._serialize, self._deserialize = ns["serialize"], ns["deserialize"]

    def _str_keys_only(self) -> bool:
        def walk(node: TypeNode, seen: frozenset[type]) -> bool:
            if node.kind is Kind.DICT and node.args[0].kind is not Kind.STR:
                return False
            if node.kind is Kind.MESSAGE:
                if node.py in seen:
                    return True
                return all(walk(f.node, seen | {node.py}) for f in read_fields(node.py))
            return all(walk(a, seen) for a in node.args)

        return all(walk(f.node, frozenset({self.cls})) for f in self.fields)

    @staticmethod
    def _wire_expr(f: FieldSpec, i: int, ns: dict[str, Any]) -> str:
        get = f"d[{f.name!r}]"
        node = f.node
        if node.kind is Kind.UUID:
            return f"{get}.bytes"
        if node.kind is Kind.OPTIONAL and node.args[0].kind is Kind.UUID:
            return f"(None if (t := {get}) is None else t.bytes)"
        conv = converters.to_wire(node)
        if conv is None:
            return get
        ns[f"_w{i}"] = conv
        return f"_w{i}({get})"

    @staticmethod
    def _decode_lines(f: FieldSpec, i: int, ns: dict[str, Any]) -> list[str]:
        key = repr(f.name)
        ns[f"_r{i}"] = _PRIORITY_CHECK if f.name == "priority" else converters.from_wire(f.node)
        if f.default_factory is not _MISSING:
            ns[f"_f{i}"] = f.default_factory
            missing = f"_f{i}()"
        elif f.default is not _MISSING:
            ns[f"_d{i}"] = f.default
            missing = f"_d{i}"
        else:
            missing = None
        if f.node.kind is Kind.UUID:
            convert = f"v = _uuid(v) if type(v) is bytes and len(v) == 16 else _r{i}(v)"
        elif f.node.kind is Kind.OPTIONAL and f.node.args[0].kind is Kind.UUID:
            convert = (f"v = None if v is None else _uuid(v) if type(v) is bytes and len(v) == 16 "
                       f"else _r{i}(v)")
        else:
            guard = _PRIORITY_GUARD if f.name == "priority" else _valid_as_decoded(f.node)
            convert = f"v = _r{i}(v)" if guard is None else f"if not ({guard}): v = _r{i}(v)"
        lines = [f"    v = w.get({key}, _M)"]
        if missing is None:
            lines.append(f"    if v is _M: raise _bad({key}, 'the field is required but missing')")
        else:
            lines.append(f"    if v is _M: v = {missing}")
            lines.append("    else:")
        indent = "        " if missing is not None else "    "
        lines += [
            f"{indent}try:",
            f"{indent}    {convert}",
            f"{indent}except (_FVE, _MSE) as e: raise _bad({key}, e) from None",
            f"    od[{key}] = v",
        ]
        return lines

    def _decode_error(self, field: str, err: object) -> MessageSerializationError:
        return MessageSerializationError(f"{self.cls.__qualname__}.{field}: {err}")

    def _construct_error(self, field: str, err: object) -> ValidationError:
        return ValidationError(f"{self.cls.__qualname__}.{field}: {err}")

    def _not_a_map(self, wire: object, nested: bool) -> MessageSerializationError:
        what = "a nested message" if nested else "the message"
        return MessageSerializationError(
            f"{self.cls.__qualname__}: {what} must be a msgpack map of field name -> value, "
            f"got {type(wire).__name__}"
        )


_F32 = struct.Struct(">Bf")


def _write_value(node: TypeNode, value: Any, out: list[bytes], packer: msgpack.Packer) -> None:
    if value is None:
        out.append(packer.pack(None))
    elif not has_float32(node):
        out.append(packer.pack(value))
    elif node.kind is Kind.NUMPY:
        out.append(_F32.pack(0xCA, value))
    elif node.kind is Kind.MESSAGE:
        node.py._rg_codec().write_map(value, out, packer)
    elif node.kind is Kind.OPTIONAL:
        _write_value(node.args[0], value, out, packer)
    elif node.kind is Kind.DICT:
        out.append(packer.pack_map_header(len(value)))
        for k, v in value.items():
            _write_value(node.args[0], k, out, packer)
            _write_value(node.args[1], v, out, packer)
    else:  # list, tuple, fixed tuple
        out.append(packer.pack_array_header(len(value)))
        elements = node.args if node.kind is Kind.FIXED_TUPLE else [node.args[0]] * len(value)
        for element, v in zip(elements, value, strict=True):
            _write_value(element, v, out, packer)


def has_float32(node: TypeNode, seen: frozenset[type] = frozenset()) -> bool:
    """Whether a float32 sits anywhere under this node, which msgpack.packb cannot emit."""
    if node.kind is Kind.NUMPY:
        return bool(node.py is np.float32 or np.dtype(node.py) == np.float32)
    if node.kind is Kind.MESSAGE:
        if node.py in seen:  # a recursive message: its float32s, if any, were seen already
            return False
        return any(has_float32(f.node, seen | {node.py}) for f in read_fields(node.py))
    return any(has_float32(a, seen) for a in node.args)


_PLAIN = {Kind.FLOAT: "float", Kind.INT: "int", Kind.BOOL: "bool", Kind.STR: "str", Kind.BYTES: "bytes"}


def _valid_as_decoded(node: TypeNode) -> str | None:
    """A cheap Python condition on `v` that, when true, proves the decoded value needs no
    conversion; the full conversion runs only when it is false. None: always convert."""
    k = node.kind
    bound = "" if node.max_len is None else f" and len(v) <= {node.max_len}"
    if k in _PLAIN:
        if k is Kind.STR and node.max_len is not None:  # UTF-8 length: at most 4 bytes a char
            bound = f" and len(v) * 4 <= {node.max_len}"
        return f"type(v) is {_PLAIN[k]}{bound}"
    if k is Kind.NONE:
        return "v is None"
    if k is Kind.OPTIONAL:
        inner = _valid_as_decoded(node.args[0])
        return None if inner is None else f"v is None or ({inner})"
    if k is Kind.LIST and node.args[0].kind in (Kind.FLOAT, Kind.BOOL):
        return f"type(v) is list{bound} and _types_in(v) <= {{{_PLAIN[node.args[0].kind]}}}"
    return None


def _types_in(values: list[Any]) -> set[type]:
    return {*map(type, values)}
