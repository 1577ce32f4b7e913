"""The translator's types: what a Python value in a handler is, taken from the message
schemas (the IR's CTypes) and from literals, never guessed from names."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen.codegen.ir import CType, MessageIR


@dataclass(frozen=True)
class Ty:
    """kind: int (held as int64_t) | float (double) | bool | char (a str of one character, its
    code point as uint32_t) | datetime (int64 ns since the epoch, as the field) | enum (its
    member's value, `name` its class) | str | list | optional | message | uuid | bufref (a
    BufferRef field) | buffer (a ctx.buffer view; ctype: its item's type) | none. A field's
    storage type (float32, int16, ...) is its CType; values are computed in Python's widths and
    converted (checked) when stored."""

    kind: str
    ctype: CType | None = None  # str/list/optional/message/uuid: the field's C type
    element: Ty | None = None  # list element, optional value
    name: str = ""  # an enum's class

    def __str__(self) -> str:
        if self.kind == "list" and self.element:
            return f"list[{self.element}]"
        if self.kind == "optional" and self.element:
            return f"{self.element} | None"
        if self.kind == "message" and self.ctype:
            return self.ctype.c_name
        if self.kind == "enum":
            return self.name
        if self.kind == "char":
            return "str (one character)"
        return self.kind

    @property
    def scalar(self) -> bool:
        return self.kind in ("int", "float", "bool")

    @property
    def local(self) -> bool:
        """Whether a local may hold it (the rest are read where they are used)."""
        return self.kind in _LOCAL_C

    @property
    def c(self) -> str:
        """The C type of a local of this type."""
        return _LOCAL_C[self.kind]


_LOCAL_C = {"int": "int64_t", "float": "double", "bool": "bool", "char": "uint32_t",
            "datetime": "int64_t", "enum": "int64_t", "buffer": "rg_buffer_view"}

INT = Ty("int")
FLOAT = Ty("float")
BOOL = Ty("bool")
CHAR = Ty("char")
DATETIME = Ty("datetime")
NONE = Ty("none")

_SCALAR_KINDS = {"int": INT, "uint": INT, "float": FLOAT, "bool": BOOL}


def of_ctype(ctype: CType, python: str = "") -> Ty | None:
    """The Python type of a field of this C type (python: the field's annotation as written,
    which names an enum's class); None where the translator has none yet."""
    if ctype.kind in _SCALAR_KINDS:
        return _SCALAR_KINDS[ctype.kind]
    if ctype.kind in ("str", "message", "uuid", "buffer"):  # buffer: a BufferRef's handle
        return Ty("bufref" if ctype.kind == "buffer" else ctype.kind, ctype)
    if ctype.kind == "datetime":
        return DATETIME
    if ctype.kind == "enum":
        return Ty("enum", name=_innermost(python))
    if ctype.kind == "list":
        element = of_ctype(ctype.element, python)
        return Ty("list", ctype, element) if element else None
    if ctype.kind == "optional":
        value = of_ctype(ctype.element, python)
        return Ty("optional", ctype, value) if value else None
    return None


def _innermost(python: str) -> str:
    """`Mode` of `Mode`, `Mode | None`, `list[Mode]` or `Annotated[list[Mode], MaxLen(4)]`."""
    text = python.removesuffix(" | None")
    text = text.split("[")[-1].split("]")[0].split(",")[0]
    return text.strip()


def unify_numeric(a: Ty, b: Ty) -> Ty:
    """The type of `a op b` for arithmetic: bools count as ints, an int with a float is a float."""
    return FLOAT if FLOAT in (a, b) else INT


class Messages:
    """The message IRs by C name, to look up fields of nested messages."""

    def __init__(self, messages: dict[str, MessageIR]) -> None:
        self.by_name = messages

    def fields(self, name: str) -> dict[str, CType]:
        return {f.name: f.ctype for f in self.by_name[name].body_fields}

    def field_ty(self, message: str, name: str) -> Ty | None:
        f = next(f for f in self.by_name[message].body_fields if f.name == name)
        return of_ctype(f.ctype, f.python_type)
