"""The translator's types: what a Python value in a handler is, taken from the message
schemas (the IR's CTypes) and from literals, never guessed from names."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen.codegen.ir import CType, MessageIR


@dataclass(frozen=True)
class Ty:
    """kind: int (held as int64_t) | float (double) | bool | str | list | optional | message |
    none. A field's storage type (float32, int16, ...) is its CType; values are computed in
    Python's widths and converted (checked) when stored."""

    kind: str
    ctype: CType | None = None  # str/list/optional/message: the field's C type
    element: Ty | None = None  # list element, optional value

    def __str__(self) -> str:
        if self.kind == "list" and self.element:
            return f"list[{self.element}]"
        if self.kind == "optional" and self.element:
            return f"{self.element} | None"
        if self.kind == "message" and self.ctype:
            return self.ctype.c_name
        return self.kind

    @property
    def scalar(self) -> bool:
        return self.kind in ("int", "float", "bool")

    @property
    def c(self) -> str:
        """The C type of a local of this type."""
        return {"int": "int64_t", "float": "double", "bool": "bool"}[self.kind]


INT = Ty("int")
FLOAT = Ty("float")
BOOL = Ty("bool")
NONE = Ty("none")

_SCALAR_KINDS = {"int": INT, "uint": INT, "float": FLOAT, "bool": BOOL}


def of_ctype(ctype: CType) -> Ty | None:
    """The Python type of a field of this C type; None where the translator has none yet."""
    if ctype.kind in _SCALAR_KINDS:
        return _SCALAR_KINDS[ctype.kind]
    if ctype.kind == "str":
        return Ty("str", ctype)
    if ctype.kind == "list":
        element = of_ctype(ctype.element)
        return Ty("list", ctype, element) if element else None
    if ctype.kind == "optional":
        value = of_ctype(ctype.element)
        return Ty("optional", ctype, value) if value else None
    if ctype.kind == "message":
        return Ty("message", ctype)
    return None


def unify_numeric(a: Ty, b: Ty) -> Ty:
    """The type of `a op b` for arithmetic: bools count as ints, an int with a float is a float."""
    return FLOAT if FLOAT in (a, b) else INT


class Messages:
    """The message IRs by C name, to look up fields of nested messages."""

    def __init__(self, messages: dict[str, MessageIR]) -> None:
        self.by_name = messages

    def fields(self, name: str) -> dict[str, CType]:
        return {f.name: f.ctype for f in self.by_name[name].body_fields}
