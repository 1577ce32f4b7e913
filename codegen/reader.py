"""Schema reader: user modules -> PackageIR, with every message's C layout computed once."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import linecache
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TypeVar

from ringgen.codegen import layout
from ringgen.codegen.ir import CType, EnumIR, FieldIR, MessageIR, PackageIR, StructLayout
from ringgen.errors import SchemaError
from ringgen.schema import header
from ringgen.schema.messages import Message, is_message_class
from ringgen.schema.modules import load_module
from ringgen.schema.types import FieldSpec, read_fields

_PRIORITY = CType("uint", "uint8_t", 1, 1, "u8", bits=8, numpy="|u1")
_CORRELATION = CType("correlation", "rg_uuid", 16, 1, "uuid")
# The C types of the header's fields (type_id and flags are raw members: no Python field).
_HEADER_CTYPES = {"message_id": layout.UUID_TYPE, "correlation_id": _CORRELATION, "priority": _PRIORITY}
_HEADER_MEMBERS: list[tuple[str, CType | str, int]] = [
    (m.name, _HEADER_CTYPES.get(m.name, m.c_type), 0) for m in header.MEMBERS]
R = TypeVar("R")
_STATE_KINDS = frozenset({"int", "uint", "float", "bool"})
_KEY_KINDS = frozenset({"int", "uint", "enum", "str", "bytes"})
_GENERATED_MEMBER_NAMES = frozenset(m.name for m in header.MEMBERS if m.python is None)


@dataclass
class HostOnly:
    """A message that cannot be laid out in C: usable by host actors only."""

    name: str
    reason: str


@dataclass
class SchemaSet:
    """The messages and kernels found in a package's modules."""

    package: PackageIR
    host_only: list[HostOnly] = field(default_factory=list)
    classes: dict[str, type[Message]] = field(default_factory=dict)
    kernels: dict[str, Any] = field(default_factory=dict)  # kernel_id -> KernelSpec
    enums: dict[str, type] = field(default_factory=dict)  # the IntEnums of its fields, by name


@functools.cache
def _class_lines(file: str) -> dict[str, tuple[int, int]]:
    """qualname -> (first line, last line) of every class in a file, from one parse of it
    (inspect.getsourcelines parses the whole module again for every class it is asked)."""
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    found: dict[str, tuple[int, int]] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found[prefix + child.name] = (first, child.end_lineno or child.lineno)
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(child, f"{prefix}{child.name}.<locals>.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def source_location(cls: type) -> tuple[str, int, list[str]]:
    """(file, first line, source lines) of a class, as far as Python can tell."""
    try:
        file = inspect.getsourcefile(cls)
    except TypeError:
        file = None
    span = _class_lines(file).get(cls.__qualname__) if file else None
    if file is None or span is None:
        return file or "<unknown>", 0, []
    lines = linecache.getlines(file)[span[0] - 1:span[1]]
    return file, span[0], lines


def field_line(cls: type, name: str) -> int:
    _, start, lines = source_location(cls)
    pattern = re.compile(rf"^\s+{re.escape(name)}\s*:")
    for i, text in enumerate(lines):
        if pattern.match(text):
            return start + i
    return start


class _Reader:
    def __init__(self, base: Path | None = None) -> None:
        self.base = base
        self.structs = layout.LayoutContext(self._message_type)
        self.messages: dict[type, MessageIR] = {}
        self.in_progress: list[type] = []
        self.names: dict[str, type] = {}
        # A message that cannot be laid out fails again, with the same error, wherever it is
        # used: its errors are reported once, not once per message that nests it.
        self.failed: dict[type, SchemaError] = {}

    def shown(self, file: str) -> str:
        """A source file as the IR and errors name it: relative to `base` when given (so a
        package built in another checkout is the same package), else as Python found it."""
        if self.base is None or not Path(file).is_absolute():
            return file
        return Path(os.path.relpath(file, self.base)).as_posix()

    def location(self, cls: type) -> tuple[str, int]:
        file, line, _ = source_location(cls)
        return self.shown(file), line

    def where(self, cls: type, name: str) -> str:
        return f"{self.location(cls)[0]}:{field_line(cls, name)}: {cls.__qualname__}.{name}"

    def _message_type(self, cls: type, where: str) -> CType:
        if cls in self.in_progress:
            chain = " -> ".join(c.__qualname__ for c in [*self.in_progress, cls])
            raise SchemaError(
                f"{where}: message {cls.__qualname__} contains itself ({chain}), which no "
                "fixed-size struct can hold; break the cycle with a BufferRef or an id field"
            )
        ir = self.read_message(cls)
        return layout.message_ctype(ir.name, ir.layout.size, ir.layout.align)

    def read_message(self, cls: type[Message]) -> MessageIR:
        if cls in self.messages:
            return self.messages[cls]
        if cls in self.failed:
            raise self.failed[cls]
        try:
            return self._read_message(cls)
        except SchemaError as e:
            self.failed[cls] = e
            raise

    def _read_message(self, cls: type[Message]) -> MessageIR:
        file, line = self.location(cls)
        layout.check_c_name(cls.__name__, f"{file}:{line}: message {cls.__qualname__}")
        other = self.names.get(cls.__name__)
        if other is not None and other is not cls:
            raise SchemaError(
                f"{file}:{line}: message {cls.__qualname__} of {cls.__module__} has the same C "
                f"name as the one of {other.__module__}; rename one of them"
            )
        self.in_progress.append(cls)
        try:
            specs = read_fields(cls)
            fields, members = [], list(_HEADER_MEMBERS)
            errors: list[str] = []  # every field's, so that one build names them all
            for spec in specs:
                where = self.where(cls, spec.name)
                try:
                    if spec.name in header.FIELDS:
                        fields.append(self._header_field(spec, where, field_line(cls, spec.name)))
                        continue
                    layout.check_c_name(spec.name, where, _GENERATED_MEMBER_NAMES)
                    # After an error the message will not be laid out: the remaining fields
                    # are checked against a scratch copy, so that their container structs do
                    # not go into the package.
                    structs = self.structs if not errors else layout.LayoutContext(
                        self._message_type, dict(self.structs.structs))
                    ctype = layout.c_type(spec.node, where, structs)
                except SchemaError as e:
                    errors.append(str(e))
                    continue
                fields.append(FieldIR(spec.name, ctype, -1, False, spec.node.describe(),
                                      _default_c(spec, ctype, self.fields_of),
                                      field_line(cls, spec.name)))
                members.append((spec.name, ctype, 0))
        finally:
            self.in_progress.pop()
        if errors:
            raise SchemaError("\n".join(errors))
        struct = layout.lay_out(cls.__name__, members, f"message {cls.__qualname__}")
        offsets = {m.name: m.offset for m in struct.members}
        fields = [FieldIR(f.name, f.ctype, offsets[f.name], f.header, f.python_type, f.default_c,
                          f.line) for f in fields]
        assert all(offsets[m.name] == m.offset for m in header.MEMBERS), "header layout moved"
        ir = MessageIR(cls.__name__, cls.qualified_name(), cls.type_id(), file, line,
                       tuple(fields), struct)
        self.structs.structs[cls.__name__] = struct
        self.messages[cls] = ir
        self.names[cls.__name__] = cls
        return ir

    def fields_of(self, cls: type) -> tuple[FieldIR, ...]:
        """The fields of a message class already read (as a nested one is, before its holder)."""
        return self.messages[cls].fields

    def read_state(self, cls: type) -> StructLayout:
        """A kernel's state dataclass as a plain C struct of the same name (no header). Its
        fields are scalars: the host writes the defaults and reads snapshots as numpy rows."""
        file, line = self.location(cls)
        where = f"{file}:{line}: state {cls.__qualname__}"
        layout.check_c_name(cls.__name__, where)
        known = self.structs.structs.get(cls.__name__)
        if known is not None:
            if self.names.get(cls.__name__, cls) is not cls:
                raise SchemaError(f"{where} has the same C name as a message; rename one of them")
            return known
        members: list[tuple[str, CType | str, int]] = []
        for spec in read_fields(cls):
            fwhere = self.where(cls, spec.name)
            layout.check_c_name(spec.name, fwhere)
            ctype = layout.c_type(spec.node, fwhere, self.structs)
            if ctype.kind not in _STATE_KINDS:
                raise SchemaError(f"{fwhere}: a state field is a number or a bool (int, float, "
                                  f"bool, numpy scalars), not {spec.node.describe()}; keep "
                                  "bigger data in a UnifiedBuffer and its BufferRef in the state")
            members.append((spec.name, ctype, 0))
        struct = layout.lay_out(cls.__name__, members, f"state {cls.__qualname__}")
        self.structs.structs[cls.__name__] = struct
        self.names[cls.__name__] = cls
        return struct

    def check_key(self, cls: type[Message], key: str, kernel_id: str) -> None:
        """A key routes by a stable hash of an integer or of the bytes of a str/bytes."""
        kind = next(f.ctype.kind for f in self.read_message(cls).fields if f.name == key)
        if kind not in _KEY_KINDS:
            raise SchemaError(f"{self.where(cls, key)}: kernel {kernel_id!r} routes by key={key!r}, "
                              f"which must be an int, uint, enum, str or bytes field, not {kind}")

    def _header_field(self, spec: FieldSpec, where: str, line: int) -> FieldIR:
        member = next(m for m in header.MEMBERS if m.name == spec.name)
        annotation = member.python
        if spec.node.describe() != annotation:
            raise SchemaError(f"{where}: header field {spec.name} must be annotated {annotation}, "
                              f"not {spec.node.describe()}; fix the annotation or rename the field")
        ctype = _HEADER_CTYPES[spec.name]
        default = _default_c(spec, ctype, self.fields_of) if spec.name == "priority" else ""
        return FieldIR(spec.name, ctype, member.offset, True, spec.node.describe(), default, line)


def _c_float(v: float) -> str | None:
    return repr(float(v)) if math.isfinite(v) else None


def _c_bytes(data: bytes) -> str:
    return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\?' else f"\\x{b:02x}\"\""
                         for b in data) + '"'


def _default_c(spec: FieldSpec, ctype: CType, fields_of: Callable[[type], Sequence[FieldIR]]
               ) -> str | None:
    """A C statement on `{lv}` that sets the field's default; '' when the zero value is the
    default or the default is made by a factory at run time; None when the field is required.
    A message-typed field's factory (the class, or a lambda that builds one) is called here:
    its value's fields are data, made the same on every call (its header is the runtime's).
    fields_of: the FieldIRs of a message class read before this one (a nested message)."""
    if spec.required:
        return None
    message = ctype.element if ctype.kind == "optional" else ctype
    if message.kind == "message":
        value = spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
        if value is None:
            return ""
        text = _message_c(value, message, fields_of)
        return f"{{lv}}.present = 1; {text.replace('{lv}', '{lv}.value')}" if message is not ctype else text
    if spec.default_factory is not dataclasses.MISSING:
        # A list's factory (`lambda: [1.0, 2.0]`) makes data, the same on every call; another
        # kind's (uuid4, datetime.now) makes a new value each time, which C cannot repeat.
        return _value_c(spec.default_factory(), ctype) if ctype.kind == "list" else ""
    return _value_c(spec.default, ctype)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _value_c(v: Any, ctype: CType) -> str:
    """A C statement on `{lv}` that stores the constant `v` ('' where zero is its value or the
    kind has no constant form here)."""
    if v is None or (isinstance(v, (list, tuple)) and not v):
        return ""
    kind = ctype.kind
    if kind in ("int", "uint", "bool", "enum") or kind == "float":
        value = getattr(v, "value", v)
        text = _c_float(value) if kind == "float" else str(int(value))
        return "" if text is None else f"{{lv}} = {text};"
    if kind in ("str", "bytes"):
        data = v.encode() if isinstance(v, str) else bytes(v)
        return f"{{lv}}.len = {len(data)}; rg_mp_copy({{lv}}.data, {_c_bytes(data)}, {len(data)});"
    if kind == "uuid":
        return f"rg_mp_copy({{lv}}.bytes, {_c_bytes(v.bytes)}, 16);"
    if kind == "datetime":  # rg_datetime: ns since the epoch, UTC, and whether it was naive
        aware = v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)
        ns = (aware - _EPOCH) // timedelta(microseconds=1) * 1000
        return f"{{lv}}.ns = INT64_C({ns}); {{lv}}.naive = {int(v.tzinfo is None)};"
    if kind == "optional":
        return f"{{lv}}.present = 1; {_value_c(v, ctype.element).replace('{lv}', '{lv}.value')}"
    if kind == "list":
        items = [_value_c(item, ctype.element).replace("{lv}", f"{{lv}}.items[{i}]")
                 for i, item in enumerate(v)]
        return " ".join([f"{{lv}}.count = {len(v)};", *filter(None, items)])
    return ""


def _message_c(value: Any, ctype: CType, fields_of: Callable[[type], Sequence[FieldIR]]) -> str:
    """`{lv}` set to a message value: its class's init (zeros, its type id, its own
    constants), then each body field as the value holds it."""
    parts = [f"rg_init_{ctype.c_name}(&{{lv}});"]
    for f in fields_of(type(value)):
        if f.header:
            continue
        field_value = getattr(value, f.name)
        inner = f.ctype.element if f.ctype.kind == "optional" else f.ctype
        if inner.kind == "message" and field_value is not None:
            text = _message_c(field_value, inner, fields_of)
            if inner is not f.ctype:
                text = f"{{lv}}.present = 1; {text.replace('{lv}', '{lv}.value')}"
        else:
            text = _value_c(field_value, f.ctype)
        if text:
            parts.append(text.replace("{lv}", f"{{lv}}.{f.name}"))
    return " ".join(parts)


def read_modules(specs: Sequence[str]) -> tuple[list[ModuleType], list[str]]:
    modules = [load_module(s) for s in specs]
    return modules, [s.replace("\\", "/") for s in specs]


def read_package(name: str, modules: Sequence[ModuleType], sources: Sequence[str],
                 base: Path | None = None) -> SchemaSet:
    """Every message defined in `modules` (and every message they nest), laid out; source
    files are named relative to `base` when given."""
    from ringgen.codegen.kernels import collect_kernels, kernel_ir, kernel_messages

    reader = _Reader(base)
    classes: dict[str, type[Message]] = {}
    for module in modules:
        for obj in vars(module).values():
            if is_message_class(obj) and obj.__module__ == module.__name__:
                classes[obj.__name__] = obj
    kernels = collect_kernels(modules)
    needed = kernel_messages(kernels.values())
    host_only = []
    errors: list[SchemaError] = []  # every error of the package, reported together
    for cls in classes.values():
        try:
            reader.read_message(cls)
        except SchemaError as e:
            if cls in needed:
                errors.append(e)
            else:
                host_only.append(HostOnly(cls.__name__, str(e)))
    for cls in needed:  # messages of kernels that live in other modules
        if cls not in classes.values():
            _collect(errors, reader.read_message, cls)
    kernel_irs = tuple(ir for k in kernels.values()
                       if (ir := _collect(errors, kernel_ir, k, reader)) is not None)
    _collect(errors, _check_type_ids, reader.messages.values())
    if errors:
        _raise_together(errors)
    ordered = tuple(reader.messages[c] for c in reader.messages)
    enums = reader.structs.enums
    enum_irs = tuple(EnumIR(e.__name__, f"{e.__module__}.{e.__qualname__}",
                            tuple((m.name, int(m.value)) for m in e)) for e in enums.values())
    package = PackageIR(name, tuple(sources), tuple(reader.structs.structs.values()), ordered,
                        kernel_irs, enum_irs)
    return SchemaSet(package, host_only, {m.name: c for c, m in reader.messages.items()} | {
        h.name: classes[h.name] for h in host_only}, kernels, dict(enums))


def _collect(errors: list[SchemaError], fn: Callable[..., R], *args: Any) -> R | None:
    """fn(*args), or None with its SchemaError added to `errors`."""
    try:
        return fn(*args)
    except SchemaError as e:
        errors.append(e)
        return None


def _raise_together(errors: list[SchemaError]) -> NoReturn:
    """One error as it is (a TranslationError keeps its diagnostics); several as one
    SchemaError of one line each (a message's errors come again where it is nested or used, and
    are said once)."""
    unique = list({str(e): e for e in errors}.values())
    if len(unique) == 1:
        raise unique[0]
    lines = list(dict.fromkeys(line for e in unique for line in str(e).splitlines()))
    raise SchemaError(f"{len(lines)} schema errors; each names its file, line and fix:\n"
                      + "\n".join(lines))


def _check_type_ids(messages: Any) -> None:
    seen: dict[int, str] = {}
    for m in messages:
        if m.type_id in seen:
            raise SchemaError(f"messages {seen[m.type_id]} and {m.qualified_name} hash to the same "
                              f"type id {m.type_id:#x}; rename one of them")
        seen[m.type_id] = m.qualified_name
