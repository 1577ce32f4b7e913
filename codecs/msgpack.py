"""One message class's codec: its fields' conversions compiled into three straight-line functions.

`to_dict`, `from_dict` and `validate` are generated as Python source once per class (on first
use) and compiled with `exec`: the hot path of every host message is then a dict display and a
few calls, with no per-call reflection over the fields.
"""

from __future__ import annotations

import dataclasses
import inspect
import struct
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgpack
import msgspec
import numpy as np

from ringgen.codecs import converters
from ringgen.codecs.typed_decode import Mode, field_mode, nested_message, typed_decoder, wire_shape
from ringgen.errors import MessageSerializationError, ValidationError
from ringgen.schema import header, ids
from ringgen.schema.types import MISSING, FieldSpec, Kind, TypeNode, read_fields

_MISSING = MISSING
# The header's priority is a uint8 on the device.
_PRIORITY_CHECK = converters.int_checker(TypeNode(Kind.INT), header.PRIORITY_MIN, header.PRIORITY_MAX)
def _priority_guard(v: str) -> str:
    return f"type({v}) is int and {header.PRIORITY_MIN} <= {v} <= {header.PRIORITY_MAX}"


def _packer_default(v: Any) -> Any:
    return converters.any_to_wire(v)


class _ThreadPackers(threading.local):
    """One reusable msgpack.Packer per thread: a Packer is not thread-safe, and making one
    per call costs as much as packing a small message."""

    def __init__(self) -> None:
        self.pack = msgpack.Packer(default=_packer_default, autoreset=True).pack


_packers = _ThreadPackers()
# msgspec writes the same bytes as msgpack-python for every type it is given here (ints in their
# smallest form, floats as float 64, str/bin by length, UUIDs as 16-byte bin), at C speed, and
# decodes to the same Python values. Both are thread-safe: each call has its own state.
_encode = msgspec.msgpack.Encoder(uuid_format="bytes").encode
_decode = msgspec.msgpack.Decoder().decode


class MessageCodec:
    """Compiled serializer, deserializer and validator of one @message class."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields = read_fields(cls)
        self.float32 = any(has_float32(f.node) for f in self.fields)
        self.any_field = any(_has_any(f.node, frozenset({cls})) for f in self.fields)
        self.native = _encodes_natively(cls, frozenset())
        self.naive_guard = None if self.native else _naive_datetimes_guard(self.fields)
        self._init: Callable[..., None] | None = None
        self._wire_nodes = {f.name: f.node for f in self.fields}
        self.to_dict: Callable[[Any], dict[str, Any]]
        self.from_dict: Callable[..., Any]
        self.validate: Callable[[Any], None]
        self._serialize: Callable[[Any], bytes]
        self._deserialize: Callable[[bytes], Any]
        self._ns: dict[str, Any] = {}  # the compiled functions' globals
        # msgspec's typed map of the class (codecs/typed_decode.py), made once: an enclosing
        # message's shape embeds it.
        self.wire_shape = None if self.any_field else wire_shape(cls.__name__, self.fields)
        self.typed_from_wire: Callable[[dict[str, Any]], Any] | None = None
        self.c_struct = False  # see check_c_ranges
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
        if not self.c_struct:
            self.c_struct = True
            self._compile()  # the constructor inlines its checks: compile it again
            self.install()

    def install(self) -> None:
        """Put the compiled functions on the class itself: no codec lookup per call."""
        self.cls.serialize = self._serialize  # type: ignore[attr-defined]
        self.cls.deserialize = staticmethod(self._deserialize)  # type: ignore[attr-defined]
        if self._init is not None:
            self.cls.__init__ = self._init  # type: ignore[misc]

    def _malformed(self, err: Exception) -> MessageSerializationError:
        return MessageSerializationError(
            f"{self.cls.__qualname__}: the bytes are not valid msgpack ({type(err).__name__}: "
            f"{err}); pass exactly what serialize() produced"
        )

    def _unpackable(self, err: Exception) -> MessageSerializationError:
        if isinstance(err, UnicodeEncodeError):
            return MessageSerializationError(
                f"{self.cls.__qualname__}: cannot serialize a str holding the lone surrogate "
                f"{err.object[err.start:err.end]!r}, which UTF-8 cannot carry; put text in str as "
                "valid Unicode and binary data in bytes"
            )
        if isinstance(err, RecursionError):
            return MessageSerializationError(
                f"{self.cls.__qualname__}: the message nests too deep to serialize; flatten it "
                f"(at most {converters.MAX_NESTING} levels of nested messages decode)"
            )
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
            "_enc": _encode,
            "_unpackb": _decode if not self.any_field else msgpack.unpackb,
            "_Deep": converters.NestingTooDeep,
            "_write_f32": self._write_float32,
            "_uuid": converters.uuid_from_bytes,
            "_uuid_bin": converters.UUID_OF_BIN,
            "_bin16": converters.BIN16,
            "_types_in": _types_in,
            "_setdict": _dict_setter(self.cls),
            "_datetime": datetime,
        }
        to_items, from_lines, check_lines = [], [], []
        for i, f in enumerate(self.fields):
            key = repr(f.name)
            to_items.append(f"{key}: {self._wire_expr(f, i, ns)}")
            from_lines += self._decode_lines(f, i, ns)
            ns[f"_c{i}"] = (_PRIORITY_CHECK if f.name == "priority"
                            else converters.checker(f.node, c_struct=self.c_struct))
            check_lines += [
                f"    try: d[{key}] = _c{i}(d[{key}])",
                f"    except _FVE as e: raise _invalid({key}, e) from None",
            ]
        self._init = self._compile_init(ns)
        decode_body = [
            "    if type(w) is not dict: raise _not_map(w, nested)",
            "    o = _new(_cls)",
            "    od = o.__dict__",
            *from_lines,
            "    return o",
        ]
        # msgpack-python, kept for what msgspec would write differently: float32 (msgspec writes
        # every float as float 64) and `Any` fields (msgspec encodes a datetime, dataclass or set
        # inside one itself, where ringgen's default hook decides). Maps with other than str
        # keys need its strict_map_key=False.
        unpack_options = "" if self._str_keys_only() or not self.any_field else ", strict_map_key=False"
        dict_display = "{" + ", ".join(to_items) + "}"
        if self.float32:
            pack = "_write_f32(m)"
        elif self.any_field:
            pack = f"_tl.pack({dict_display})"
        elif self.native:  # msgspec encodes the dataclass itself: fields in order, no dict made
            pack = "_enc(m)"
        elif self.naive_guard is not None:  # the same, while its datetimes are naive
            pack = f"_enc(m) if {self.naive_guard} else _enc({dict_display})"
        else:
            pack = f"_enc({dict_display})"
        if self.wire_shape is None:  # the reference is the decoder
            deserialize = ["deserialize = reference_deserialize"]
            typed_from_wire: list[str] = []
        else:
            ns["_typed"] = typed_decoder(self.wire_shape)
            deserialize = [
                "def deserialize(data):",
                "    try: w = _typed(data)",
                "    except Exception: return reference_deserialize(data)",
                *self._typed_lines(ns, "return reference_deserialize(data)"),
                "    o = _new(_cls)",
                "    _setdict(o, w)",
                "    return o",
            ]
            # The same for this class nested in another's typed map: any failure is the outer
            # deserialize's to hand to its reference decoder, which names the field.
            typed_from_wire = [
                "def typed_from_wire(w):",
                *self._typed_lines(ns, None),
                "    o = _new(_cls)",
                "    _setdict(o, w)",
                "    return o",
            ]
        src = [
            "def serialize(m):",
            *(["    d = m.__dict__"] if "d[" in pack else []),  # read by a dict display or guard
            f"    try: return {pack}",
            "    except (TypeError, ValueError, OverflowError, RecursionError) as e:",
            "        raise _unpackable(e) from None",
            # the reference: msgspec's untyped decode, then each field's conversion in Python
            "def reference_deserialize(data):",
            f"    try: w = _unpackb(data{unpack_options})",
            "    except Exception as e: raise _malformed(e) from None",
            "    nested = False",
            *decode_body,
            *deserialize,
            "def to_dict(m):",
            "    d = m.__dict__",
            "    return {" + ", ".join(to_items) + "}",
            "def from_dict(w, nested=False):",
            *decode_body,
            "def validate(m):",
            "    d = m.__dict__",
            *(check_lines or ["    pass"]),
            *typed_from_wire,
        ]
        exec(compile("\n".join(src), f"<ringgen codec {self.cls.__qualname__}>", "exec"), ns)
        self._ns = ns
        self.to_dict, self.from_dict, self.validate = ns["to_dict"], ns["from_dict"], ns["validate"]
        self._serialize, self._deserialize = ns["serialize"], ns["deserialize"]
        self.typed_from_wire = ns.get("typed_from_wire")

    def _compile_init(self, ns: dict[str, Any]) -> Callable[..., None] | None:
        """The class's `__init__` with each field's check inline: the dataclass's own stores every
        field through object.__setattr__ and then validates in a second pass. None where the
        dataclass has init-only or non-init fields, whose semantics only its own __init__ has."""
        params = dataclasses.fields(self.cls)
        # The dataclass's __init__ takes exactly the fields: no InitVar, no init=False field.
        own_init = self.cls.__dict__.get("__init__")
        taken = [] if own_init is None else list(inspect.signature(own_init).parameters)[1:]
        if (own_init is None or taken != [f.name for f in params if f.init]
                or not all(f.init for f in params) or any(f.name.startswith("__rg_") for f in params)):
            return None
        specs = {f.name: f for f in self.fields}
        positional = [f for f in params if not f.kw_only]
        keyword = [f for f in params if f.kw_only]
        init_ns: dict[str, Any] = {"__rg_M": _MISSING, "__rg_FVE": converters.FieldValueError,
                                   "__rg_invalid": self._construct_error, "_UUID": UUID,
                                   "__rg_post": getattr(self.cls, "__rg_user_post_init__", None)}

        def param(f: dataclasses.Field[Any]) -> str:
            if f.default is not dataclasses.MISSING:
                init_ns[f"__rg_d_{f.name}"] = f.default
                return f"{f.name}=__rg_d_{f.name}"
            if f.default_factory is not dataclasses.MISSING:
                return f"{f.name}=__rg_M"
            return f.name

        signature = ["__rg_self", *map(param, positional)]
        if keyword:
            signature += ["*", *map(param, keyword)]
        init_ns.update(__rg_take=ids.take, __rg_refill=ids.refill,
                       **{f"__rg_{t.__name__}s": frozenset({t}) for t in (float, bool, int)})
        body = ["    __rg_d = __rg_self.__dict__"]
        for i, f in enumerate(params):
            name, key = f.name, repr(f.name)
            init_ns[f"__rg_c_{name}"] = ns[f"_c{i}"]
            check = [f"try: {name} = __rg_c_{name}({name})",
                     f"except __rg_FVE as e: raise __rg_invalid({key}, e) from None"]
            if f.default_factory is ids.new_message_id:  # a UUID from the pool, taken inline
                body += [f"    if {name} is __rg_M:",
                         f"        try: {name} = __rg_take()",
                         f"        except IndexError: {name} = __rg_refill()",
                         f"    elif not ({_valid_as_given(specs[name].node, name, self.c_struct)}):",
                         *(f"        {line}" for line in check)]
            else:
                if f.default_factory is not dataclasses.MISSING:
                    init_ns[f"__rg_f_{name}"] = f.default_factory
                    body.append(f"    if {name} is __rg_M: {name} = __rg_f_{name}()")
                body += _checked_arg(specs[name].node, name, check, self.c_struct)
            body.append(f"    __rg_d[{key}] = {name}")
        if init_ns["__rg_post"] is not None:
            body.append("    __rg_post(__rg_self)")
        src = [f"def __init__({', '.join(signature)}):", *body]
        exec(compile("\n".join(src), f"<ringgen __init__ {self.cls.__qualname__}>", "exec"), init_ns)
        init: Callable[..., None] = init_ns["__init__"]
        init.__qualname__ = f"{self.cls.__qualname__}.__init__"
        return init

    def _typed_lines(self, ns: dict[str, Any], fallback: str | None) -> list[str]:
        """After the typed decode (codecs/typed_decode.py): in field order, as the reference
        converts them, the fields msgspec's value is not yet the stored one; then the defaults
        of the absent fields among the others. `fallback`: the statement a nested message's
        failure runs (None: let it propagate)."""
        modes = [field_mode(f)[1] for f in self.fields]
        lines = ["    od = w"] if Mode.CONVERT in modes else []  # where _decode_lines store
        defaults: list[str] = []
        for i, (f, mode) in enumerate(zip(self.fields, modes, strict=True)):
            key = repr(f.name)
            if f.default_factory is not _MISSING:
                missing: str | None = f"_f{i}()"
            else:
                missing = None if f.default is _MISSING else f"_d{i}"
            if mode is Mode.CONVERT:
                lines += self._decode_lines(f, i, ns)
                continue
            if missing is not None:  # _f{i} / _d{i}: set by the reference's _decode_lines
                defaults.append(f"        if {key} not in w: w[{key}] = {missing}")
            if mode is Mode.UUID:  # a 16-byte bin (or None) by now: made a UUID in C, no call
                lines += [f"    if type(v := w.get({key})) is bytes: w[{key}] = _uuid_bin(_bin16 + v)"]
            elif mode is Mode.ASCII:  # within the bound in characters: exact if ASCII
                lines += [f"    if not (w.get({key}) or '').isascii():  # a str, None or absent",
                          f"        try: _r{i}(w[{key}])",
                          f"        except _FVE as e: raise _bad({key}, e) from None"]
            elif mode is Mode.NESTED:
                lines += self._nested_lines(f, i, ns, fallback)
        if defaults:  # all present (the usual case) or some to fill
            lines += [f"    if len(w) != {len(self.fields)}:", *defaults]
        return lines

    @staticmethod
    def _nested_lines(f: FieldSpec, i: int, ns: dict[str, Any], fallback: str | None) -> list[str]:
        message = nested_message(f.node)
        assert message is not None
        ns[f"_n{i}"] = message.py._rg_codec().typed_from_wire
        key, kind = repr(f.name), f.node.kind
        make = {Kind.LIST: f"[*map(_n{i}, v)]", Kind.TUPLE: f"(*map(_n{i}, v),)"}.get(kind, f"_n{i}(v)")
        # absent: its default comes later; None: an Optional's (msgspec refused it elsewhere)
        lines = [f"    if (v := w.get({key})) is not None:"]
        if fallback is None:
            return [*lines, f"        w[{key}] = {make}"]
        return [*lines, f"        try: w[{key}] = {make}", f"        except Exception: {fallback}"]

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
            guard = _priority_guard("v") if f.name == "priority" else _valid_as_decoded(f.node)
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
            f"{indent}except _Deep: raise",
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


def _has_any(node: TypeNode, seen: frozenset[type]) -> bool:
    """Whether an `Any` sits anywhere under this node, nested messages included."""
    if node.kind is Kind.ANY:
        return True
    if node.kind is Kind.MESSAGE:
        if node.py in seen:
            return False
        return any(_has_any(f.node, seen | {node.py}) for f in read_fields(node.py))
    return any(_has_any(a, seen) for a in node.args)


_NATIVE = frozenset({Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.STR, Kind.BYTES, Kind.NONE, Kind.UUID,
                     Kind.NUMPY, Kind.LIST, Kind.TUPLE, Kind.FIXED_TUPLE, Kind.DICT, Kind.OPTIONAL})


def _encodes_natively(cls: type, seen: frozenset[type]) -> bool:
    """Whether msgspec, given the message object itself, writes exactly its serialize() bytes:
    every field's stored value is what msgpack carries (a datetime, BufferRef or Any is not), and
    no name begins with '_' (msgspec leaves those out of a dataclass)."""
    if cls in seen:
        return True
    seen = seen | {cls}
    return all(not f.name.startswith("_") and _native_node(f.node, seen) for f in read_fields(cls))


def _native_node(node: TypeNode, seen: frozenset[type]) -> bool:
    if node.kind is Kind.MESSAGE:
        return _encodes_natively(node.py, seen)
    if node.kind is Kind.ENUM:
        return all(type(m.value) in (int, str) for m in node.py)
    return node.kind in _NATIVE and all(_native_node(a, seen) for a in node.args)


def _dict_setter(cls: type) -> Callable[[Any, dict[str, Any]], None]:
    """What `object.__setattr__(o, '__dict__', w)` calls, looked up once: the `__dict__`
    descriptor of the first class in the MRO that has one (a frozen dataclass's own
    __setattr__ refuses)."""
    owner = next(c for c in cls.__mro__ if "__dict__" in c.__dict__)
    setter: Callable[[Any, dict[str, Any]], None] = owner.__dict__["__dict__"].__set__
    return setter


def _naive_datetimes_guard(fields: list[FieldSpec]) -> str | None:
    """A condition on `d` (the message's __dict__) under which msgspec, given the message object,
    writes its serialize() bytes although not every field is native: the only others are
    datetimes (or Optional ones) of this class, and they are naive. msgspec writes a naive
    datetime as exactly its isoformat() text; an aware one as a msgpack timestamp, so then the
    dict of wire values is encoded instead."""
    checks = []
    for f in fields:
        node = f.node
        inner = node.args[0] if node.kind is Kind.OPTIONAL else node
        if inner.kind is Kind.DATETIME:
            t = f"d[{f.name!r}]"
            naive = f"type({t}) is _datetime and {t}.tzinfo is None"
            checks.append(f"({t} is None or {naive})" if inner is not node else naive)
        elif f.name.startswith("_") or not _native_node(node, frozenset()):
            return None
    return " and ".join(checks) or None


def _checked_arg(node: TypeNode, v: str, check: list[str], c_struct: bool) -> list[str]:
    """The constructor's lines that make argument `v` its stored value: a cheap test that proves
    it valid as given (or, for a list of scalars, valid once copied), else the full `check`."""
    if v == "priority":  # the header's uint8, whatever the class annotates
        guard: str | None = _priority_guard(v)
    else:
        guard = _valid_as_given(node, v, c_struct)
    if guard is not None:
        return [f"    if not ({guard}):", *(f"        {line}" for line in check)]
    sequence = _scalars_as_given(node, v, c_struct)
    if sequence is None:
        return [f"    {line}" for line in check]
    test, stored = sequence
    return [f"    if {test}: {v} = {stored}", "    else:", *(f"        {line}" for line in check)]


def _scalars_as_given(node: TypeNode, v: str, c_struct: bool) -> tuple[str, str] | None:
    """For a list or tuple[T, ...] of float, bool or int: a test that `v` is one whose items
    all are exactly T (ints within range), and the value to store: a list copied, so that the
    message never shares the caller's, a tuple as it is."""
    if node.kind not in (Kind.LIST, Kind.TUPLE) or node.args[0].kind not in (Kind.FLOAT, Kind.BOOL, Kind.INT):
        return None
    item = node.args[0].kind
    made = "list" if node.kind is Kind.LIST else "tuple"
    bound = "" if node.max_len is None else f" and len({v}) <= {node.max_len}"
    test = f"type({v}) is {made}{bound} and {{*map(type, {v})}} <= __rg_{_PLAIN[item]}s"
    if item is Kind.INT:
        low, high = _C_INT_RANGE if c_struct else _INT_RANGE
        test += f" and (not {v} or ({low} <= min({v}) and max({v}) <= {high}))"
    return test, (f"{v}.copy()" if made == "list" else v)


def _valid_as_given(node: TypeNode, v: str, c_struct: bool = False) -> str | None:
    """A cheap condition on the constructor argument `v` that, when true, proves it needs no
    check or conversion. Only for values stored as given: a list is copied by its check, so
    that the message never shares it with the caller. `c_struct`: ints must fit int64_t."""
    k = node.kind
    if k is Kind.STR:  # ASCII: one byte a char and no lone surrogate (isascii is O(1))
        bound = "" if node.max_len is None else f" and len({v}) <= {node.max_len}"
        return f"type({v}) is str and {v}.isascii(){bound}"
    if k in (Kind.FLOAT, Kind.BOOL) or (k is Kind.BYTES and node.max_len is None):
        return f"type({v}) is {_PLAIN[k]}"
    if k is Kind.INT:
        low, high = _C_INT_RANGE if c_struct else _INT_RANGE
        return f"type({v}) is int and {low} <= {v} <= {high}"
    if k is Kind.NONE:
        return f"{v} is None"
    if k is Kind.UUID:
        return f"type({v}) is _UUID"
    if k is Kind.OPTIONAL:
        inner = _valid_as_given(node.args[0], v, c_struct)
        return None if inner is None else f"{v} is None or ({inner})"
    return None


_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack carries
_C_INT_RANGE = (-(2**63), 2**63 - 1)  # what a C struct's int64_t holds
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
