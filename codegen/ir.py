"""The intermediate representation: frozen dataclasses with every C layout decision made.

The IR is computed once by codegen/layout.py and codegen/reader.py and is the only thing the
templates see. It is also hashed (canonical JSON) into the package's schema hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CType:
    """How one Python field type is held in C and written as msgpack.

    kind: int | uint | float | bool | str | bytes | uuid | datetime | enum | buffer | list |
    array | optional | message. `bound` is the capacity of str/bytes/list and the length of an
    array; `args` the element type of list/array/optional.
    """

    kind: str
    c_name: str
    size: int
    align: int
    tag: str  # short name used to name the container structs built from this type
    args: tuple[CType, ...] = ()
    bound: int = 0
    bits: int = 0  # width of int/uint/float
    enum_values: tuple[int, ...] = ()
    numpy: str = ""  # numpy format of a scalar ('<i8', '<f8', '?', ...)

    @property
    def element(self) -> CType:
        return self.args[0]


@dataclass(frozen=True)
class Member:
    """One member of a C struct, padding included, at its byte offset."""

    name: str
    c_type: str
    offset: int
    size: int
    array: int = 0  # 0: a scalar member; N: `c_type name[N]`
    padding: bool = False
    ctype: CType | None = None  # the field type behind the member, None for padding/raw

    @property
    def declaration(self) -> str:
        suffix = f"[{self.array}]" if self.array else ""
        return f"{self.c_type} {self.name}{suffix};"


@dataclass(frozen=True)
class StructLayout:
    """A C struct: a message or a container (bounded str/bytes/list, optional, array)."""

    c_name: str
    members: tuple[Member, ...]
    size: int
    align: int
    comment: str

    @property
    def fields(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.padding)


@dataclass(frozen=True)
class FieldIR:
    """A message field in serialization order; header fields live in the common header."""

    name: str
    ctype: CType
    offset: int
    header: bool
    python_type: str
    default_c: str | None  # C assignment used when a decoded map lacks the key; None: required
    line: int


@dataclass(frozen=True)
class MessageIR:
    name: str
    qualified_name: str
    type_id: int
    source: str
    line: int
    fields: tuple[FieldIR, ...]
    layout: StructLayout

    @property
    def body_fields(self) -> tuple[FieldIR, ...]:
        return tuple(f for f in self.fields if not f.header)


@dataclass(frozen=True)
class KernelIR:
    """A ring kernel (see codegen/kernels.py); messages by name."""

    kernel_id: str
    input: str
    output: str | None
    block: int
    grid: int
    queue_size: int
    cuda_source: str
    cuda_file: str
    cuda_line: int
    python_name: str
    host_actor: bool
    state: str | None = None  # the C struct of each block's persistent state
    key: str | None = None  # the input field that picks the block
    sends: tuple[tuple[str, str], ...] = ()  # (target name, C message type), port = index + 1
    per: str = "block"  # the threads that handle one request: block, warp or thread
    batch: int = 1  # requests one round takes at most (codegen/kernels.py: batch_size)


@dataclass(frozen=True)
class EnumIR:
    """An IntEnum that message fields use: its members become C constants `<Enum>_<MEMBER>`."""

    name: str
    qualified_name: str
    members: tuple[tuple[str, int], ...]  # (name, value), in definition order


@dataclass(frozen=True)
class PackageIR:
    name: str
    sources: tuple[str, ...]  # as given on the command line, '/'-separated
    structs: tuple[StructLayout, ...]  # every struct, each after the structs it embeds
    messages: tuple[MessageIR, ...]
    kernels: tuple[KernelIR, ...] = field(default=())
    enums: tuple[EnumIR, ...] = field(default=())

    def message(self, name: str) -> MessageIR:
        return next(m for m in self.messages if m.name == name)

    @property
    def content_hash(self) -> str:
        """Hash of everything that is rendered, source positions included."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=_json_default)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def schema_hash(self) -> str:
        """Hash of everything the generated code depends on; sources' paths excluded, so the
        package built from another working directory is the same package."""
        data = dataclasses.asdict(self)
        data.pop("sources")
        for m in data["messages"]:
            m.pop("source")
            m.pop("line")
            for f in m["fields"]:
                f.pop("line")
        for k in data["kernels"]:
            k.pop("cuda_file")
            k.pop("cuda_line")
        text = json.dumps(data, sort_keys=True, default=_json_default)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    raise TypeError(f"IR holds a non-JSON value {obj!r}")
