"""The type model: a message field's annotation read once into a small tree of `TypeNode`s,
and a message's fields as `FieldSpec`s (name, type tree, default).

Serialization (runtime/codec.py), construction checks (runtime/messages.py) and the C layout
(codegen/layout.py) all read this tree, so the three agree on what a field is.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import MISSING, dataclass
from datetime import datetime
from typing import Annotated, Any, Union
from uuid import UUID

import numpy as np

from ringgen.errors import SchemaError, ValidationError


@dataclass(frozen=True)
class MaxLen:
    """Upper bound of a str (UTF-8 bytes), bytes, list or tuple field: `Annotated[str, MaxLen(16)]`."""

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise SchemaError(f"MaxLen needs a positive int, got {self.n!r}")


@dataclass(frozen=True)
class BufferRef:
    """A reference to a registered UnifiedBuffer; in C a 64-bit handle."""

    buffer_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.buffer_id, int) or not 0 <= self.buffer_id < 2**64:
            raise ValidationError(f"BufferRef.buffer_id must be an int in 0..2**64-1, got {self.buffer_id!r}")


class Kind(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    BYTES = "bytes"
    NONE = "None"
    LIST = "list"
    TUPLE = "tuple"  # tuple[T, ...]
    FIXED_TUPLE = "fixed tuple"  # tuple[A, B, C]
    DICT = "dict"
    UUID = "UUID"
    DATETIME = "datetime"
    MESSAGE = "message"
    OPTIONAL = "Optional"
    ENUM = "enum"
    NUMPY = "numpy scalar"
    BUFFER_REF = "BufferRef"
    ANY = "Any"


@dataclass(frozen=True)
class TypeNode:
    """One node of a field's type. `args` are element types; `py` the class behind it, if any."""

    kind: Kind
    args: tuple[TypeNode, ...] = ()
    max_len: int | None = None
    py: Any = None  # message class, enum class or numpy scalar type

    def describe(self) -> str:
        """The annotation as a user would write it, for error messages."""
        if self.kind in (Kind.MESSAGE, Kind.ENUM):
            return str(self.py.__name__)
        if self.kind is Kind.NUMPY:
            return f"np.{np.dtype(self.py).name}"
        inner = ", ".join(a.describe() for a in self.args)
        if self.kind is Kind.OPTIONAL:
            text = f"{inner} | None"
        elif self.kind is Kind.TUPLE:
            text = f"tuple[{inner}, ...]"
        elif self.kind in (Kind.LIST, Kind.FIXED_TUPLE, Kind.DICT):
            text = f"{'tuple' if self.kind is Kind.FIXED_TUPLE else self.kind.value}[{inner}]"
        else:
            text = self.kind.value
        return f"Annotated[{text}, MaxLen({self.max_len})]" if self.max_len else text


_SCALARS: dict[Any, Kind] = {
    int: Kind.INT,
    float: Kind.FLOAT,
    bool: Kind.BOOL,
    str: Kind.STR,
    bytes: Kind.BYTES,
    type(None): Kind.NONE,
    None: Kind.NONE,
    UUID: Kind.UUID,
    datetime: Kind.DATETIME,
    BufferRef: Kind.BUFFER_REF,
    Any: Kind.ANY,
}
_BOUNDABLE = (Kind.STR, Kind.BYTES, Kind.LIST, Kind.TUPLE)


def read_type(annotation: Any, where: str) -> TypeNode:
    """Read one resolved annotation into a TypeNode; `where` names the field in errors."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        bounds = [e for e in extras if isinstance(e, MaxLen)]
        node = read_type(base, where)
        if not bounds:
            return node
        if node.kind not in _BOUNDABLE:
            raise SchemaError(
                f"{where}: MaxLen bounds str, bytes, list or tuple[T, ...], not {node.describe()}; "
                "remove the MaxLen"
            )
        return TypeNode(node.kind, node.args, bounds[-1].n, node.py)
    if annotation in _SCALARS:
        return TypeNode(_SCALARS[annotation])
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return TypeNode(Kind.ENUM, py=annotation)
        if issubclass(annotation, np.generic):
            return TypeNode(Kind.NUMPY, py=annotation)
        if getattr(annotation, "__rg_message__", False):
            return TypeNode(Kind.MESSAGE, py=annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == len(args) - 1 and len(rest) == 1:
            return TypeNode(Kind.OPTIONAL, (read_type(rest[0], where),))
        raise SchemaError(
            f"{where}: unions other than `X | None` are not supported ({annotation}); "
            "use one type, or a nested @message per alternative"
        )
    if origin is list and len(args) == 1:
        return TypeNode(Kind.LIST, (read_type(args[0], where),))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return TypeNode(Kind.TUPLE, (read_type(args[0], where),))
    if origin is tuple and args:
        return TypeNode(Kind.FIXED_TUPLE, tuple(read_type(a, where) for a in args))
    if origin is dict and len(args) == 2:
        return TypeNode(Kind.DICT, (read_type(args[0], where), read_type(args[1], where)))
    if annotation in (list, tuple, dict):
        element = {list: "list[float]", tuple: "tuple[int, ...]", dict: "dict[str, int]"}[annotation]
        raise SchemaError(f"{where}: bare `{annotation.__name__}` has no element type; write e.g. {element}")
    raise SchemaError(
        f"{where}: type {annotation!r} is not supported; use int, float, bool, str, bytes, None, "
        "list, tuple, dict, UUID, datetime, an Enum, a numpy scalar, BufferRef or a @message class"
    )


@dataclass(frozen=True)
class FieldSpec:
    """A message field as the codec and the code generator see it."""

    name: str
    node: TypeNode
    default: Any = MISSING
    default_factory: Any = MISSING

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is MISSING


def read_fields(cls: type) -> list[FieldSpec]:
    """The fields of a @message class, in declaration order, with their types resolved."""
    try:
        hints = typing.get_type_hints(cls, localns=getattr(cls, "__rg_localns__", None),
                                      include_extras=True)
    except NameError as e:
        raise SchemaError(
            f"{cls.__qualname__}: cannot resolve an annotation ({e}); define or import the type "
            "before the message is first used"
        ) from None
    specs = []
    for f in dataclasses.fields(cls):
        node = read_type(hints[f.name], f"{cls.__qualname__}.{f.name}")
        specs.append(FieldSpec(f.name, node, f.default, f.default_factory))
    return specs
