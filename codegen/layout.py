"""C layout: each field type lays itself out as a CType; structs get explicit padding.

Rules: natural alignment, every padding byte an explicit `_padN` member,
little-endian. A type that cannot live in a fixed-size struct raises SchemaError with the fix.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ringgen.codegen.ir import CType, Member, StructLayout
from ringgen.errors import SchemaError
from ringgen.schema.types import Kind, TypeNode

# C and C++ keywords, and CUDA built-in names, that a field or message may not be called.
C_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires return
short signed sizeof static static_assert static_cast struct switch template this thread_local
throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t while
xor xor_eq restrict threadIdx blockIdx blockDim gridDim warpSize main
""".split())

_SCALARS: dict[Kind, CType] = {
    Kind.INT: CType("int", "int64_t", 8, 8, "i64", bits=64, numpy="<i8"),
    Kind.FLOAT: CType("float", "double", 8, 8, "f64", bits=64, numpy="<f8"),
    Kind.BOOL: CType("bool", "uint8_t", 1, 1, "bool", numpy="?"),
    Kind.UUID: CType("uuid", "rg_uuid", 16, 1, "uuid"),
    Kind.DATETIME: CType("datetime", "rg_datetime", 16, 8, "datetime"),
    Kind.BUFFER_REF: CType("buffer", "uint64_t", 8, 8, "u64", bits=64, numpy="<u8"),
}


UUID_TYPE = _SCALARS[Kind.UUID]


def numpy_scalar(dt: np.dtype) -> CType | None:
    """The C type of a numpy scalar dtype (a field annotated np.int32, a ctx.buffer view's
    items); None where it is not a number or a bool."""
    if dt == np.bool_:
        return _SCALARS[Kind.BOOL]
    bits = dt.itemsize * 8
    if dt.kind == "i" and bits in (8, 16, 32, 64):
        return CType("int", f"int{bits}_t", dt.itemsize, dt.itemsize, f"i{bits}", bits=bits,
                     numpy=dt.str)
    if dt.kind == "u" and bits in (8, 16, 32, 64):
        return CType("uint", f"uint{bits}_t", dt.itemsize, dt.itemsize, f"u{bits}", bits=bits,
                     numpy=dt.str)
    if dt.kind == "f" and bits in (32, 64):
        return CType("float", "float" if bits == 32 else "double", dt.itemsize, dt.itemsize,
                     f"f{bits}", bits=bits, numpy=dt.str)
    return None


@dataclass
class LayoutContext:
    """Collects the container structs that message fields need, each once, in the order they
    must be declared (a struct after everything it embeds)."""

    message_type: Callable[[type, str], CType]
    structs: dict[str, StructLayout] = field(default_factory=dict)
    enums: dict[str, type[enum.Enum]] = field(default_factory=dict)  # C name -> the enum

    def container(self, c_name: str, comment: str, members: list[tuple[str, CType | str, int]],
                  kind: str, tag: str, args: tuple[CType, ...], bound: int) -> CType:
        if c_name not in self.structs:
            self.structs[c_name] = lay_out(c_name, members, comment)
        s = self.structs[c_name]
        return CType(kind, c_name, s.size, s.align, tag, args, bound)


    def add_enum(self, cls: type[enum.Enum], where: str) -> None:
        """Records an enum whose members the C code gets as constants `<Enum>_<MEMBER>`."""
        other = self.enums.setdefault(cls.__name__, cls)
        if other is not cls:
            raise SchemaError(f"{where}: enum {cls.__qualname__} of {cls.__module__} has the same "
                              f"C name as the one of {other.__module__}; rename one of them")
        check_c_name(cls.__name__, where)
        for member in cls:
            if not member.name.isascii() or not member.name.isidentifier():
                raise SchemaError(f"{where}: enum member {cls.__name__}.{member.name} is not an "
                                  "ASCII identifier, which its C constant needs; rename it")


_RAW: dict[str, tuple[int, int]] = {"uint32_t": (4, 4), "uint8_t": (1, 1), "char": (1, 1)}


def lay_out(c_name: str, members: list[tuple[str, CType | str, int]], comment: str) -> StructLayout:
    """Place members in order at their natural alignment; name every padding byte."""
    out: list[Member] = []
    offset, align, pads = 0, 1, 0

    def pad_to(a: int) -> None:
        nonlocal offset, pads
        if offset % a:
            n = a - offset % a
            out.append(Member(f"_pad{pads}", "uint8_t", offset, n, array=n, padding=True))
            offset += n
            pads += 1

    for name, ctype, count in members:
        if isinstance(ctype, str):
            size, a = _RAW[ctype]
            c_name_of, ct = ctype, None
        else:
            size, a, c_name_of, ct = ctype.size, ctype.align, ctype.c_name, ctype
        pad_to(a)
        total = size * max(count, 1)
        out.append(Member(name, c_name_of, offset, total, array=count, ctype=ct))
        offset += total
        align = max(align, a)
    pad_to(align)
    return StructLayout(c_name, tuple(out), offset, align, comment)


def c_type(node: TypeNode, where: str, ctx: LayoutContext) -> CType:
    """The C representation of one field type; SchemaError (naming `where`) if there is none."""
    k = node.kind
    if k in _SCALARS:
        return _SCALARS[k]
    if k is Kind.NUMPY:
        scalar = numpy_scalar(np.dtype(node.py))
        if scalar is None:
            raise SchemaError(f"{where}: numpy type {np.dtype(node.py).name} has no C layout; "
                              "use an int8..int64, uint8..uint64, float32, float64 or bool_")
        return scalar
    if k is Kind.ENUM:
        ctype = _enum_type(node, where)
        ctx.add_enum(node.py, where)
        return ctype
    if k is Kind.MESSAGE:
        return ctx.message_type(node.py, where)
    if k in (Kind.STR, Kind.BYTES, Kind.LIST, Kind.TUPLE) and node.max_len is None:
        raise SchemaError(
            f"{where}: {node.describe()} has no bound, so it cannot live in a fixed-size C struct; "
            f"write Annotated[{node.describe()}, MaxLen(N)], or pass large data as a BufferRef "
            "to a UnifiedBuffer"
        )
    if k in (Kind.STR, Kind.BYTES):
        n = node.max_len or 0
        name = f"rg_{k.value}{n}"
        return ctx.container(name, f"{node.describe()}: {'UTF-8 ' if k is Kind.STR else ''}"
                             f"length + data", [("len", "uint32_t", 0),
                                                ("data", "char" if k is Kind.STR else "uint8_t", n)],
                             k.value, f"{k.value}{n}", (), n)
    if k in (Kind.LIST, Kind.TUPLE):
        item = c_type(node.args[0], f"{where} (item)", ctx)
        n = node.max_len or 0
        return ctx.container(f"rg_list_{item.tag}_{n}", f"{node.describe()}: count + items",
                             [("count", "uint32_t", 0), ("items", item, n)],
                             "list", f"list_{item.tag}_{n}", (item,), n)
    if k is Kind.FIXED_TUPLE:
        items = [c_type(a, f"{where} (item {i})", ctx) for i, a in enumerate(node.args)]
        if len(set(items)) != 1:
            raise SchemaError(
                f"{where}: {node.describe()} mixes item types, which a C array cannot hold; "
                "use one item type, or a nested @message with one field per item"
            )
        n = len(items)
        return ctx.container(f"rg_{items[0].tag}x{n}", f"{node.describe()}", [("items", items[0], n)],
                             "array", f"{items[0].tag}x{n}", (items[0],), n)
    if k is Kind.OPTIONAL:
        inner = c_type(node.args[0], where, ctx)
        return ctx.container(f"rg_opt_{inner.tag}", f"{node.describe()}: presence flag + value",
                             [("present", "uint8_t", 0), ("value", inner, 0)],
                             "optional", f"opt_{inner.tag}", (inner,), 0)
    fixes = {
        Kind.DICT: "a dict has no fixed size; use a bounded list of a nested @message "
                   "(key and value fields), or a BufferRef",
        Kind.ANY: "Any has no C type; annotate the field with a concrete type",
        Kind.NONE: "a field that is always None carries nothing; remove it or use `T | None`",
    }
    raise SchemaError(f"{where}: {node.describe()} cannot be laid out in C: {fixes[k]}")


def _enum_type(node: TypeNode, where: str) -> CType:
    cls: type[enum.Enum] = node.py
    values = [m.value for m in cls]
    if not all(isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31
               for v in values):
        raise SchemaError(f"{where}: enum {cls.__name__} has values that are not int32; "
                          "use an IntEnum with values in -2**31..2**31-1")
    return CType("enum", "int32_t", 4, 4, "i32", bits=32,
                 enum_values=tuple(sorted(set(values))), numpy="<i4")


def check_c_name(name: str, where: str, reserved: frozenset[str] = frozenset()) -> None:
    """A name that will be a C identifier: not a keyword, not a generated name."""
    if name in C_RESERVED or name in reserved or name.startswith(("rg_", "_pad", "__")):
        raise SchemaError(
            f"{where}: the name {name!r} is a C/C++/CUDA keyword or collides with a name ringgen "
            "generates (rg_*, _padN, __*, the header fields); rename it"
        )


def message_ctype(name: str, size: int, align: int) -> CType:
    return CType("message", name, size, align, name)


def describe_layout(layout: StructLayout) -> list[tuple[str, str, int, int]]:
    """(member, C type, offset, size) rows, for `ringgen inspect`."""
    return [(m.name, m.c_type + (f"[{m.array}]" if m.array else ""), m.offset, m.size)
            for m in layout.members]

