"""Messages that cannot be laid out in C: each SchemaError names file:line, class, field and fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from ringgen import MaxLen, SchemaError, message, ring_kernel
from ringgen.codegen.reader import _Reader


def _layout(cls: type) -> None:
    _Reader().read_message(cls)


def _expect(cls: type, field: str, fix: str) -> None:
    with pytest.raises(SchemaError) as info:
        _layout(cls)
    text = str(info.value)
    assert re.search(rf"test_schema_errors\.py:\d+: .*{cls.__name__}\.{field}", text), text
    assert re.search(fix, text), text


def test_unbounded_containers_ask_for_maxlen() -> None:
    @message
    @dataclass
    class Unbounded:
        values: list[float]

    @message
    @dataclass
    class UnboundedText:
        text: str

    _expect(Unbounded, "values", r"Annotated\[list\[float\], MaxLen\(N\)\].*BufferRef")
    _expect(UnboundedText, "text", r"Annotated\[str, MaxLen\(N\)\]")


def test_dict_and_any_have_no_layout() -> None:
    @message
    @dataclass
    class WithDict:
        table: dict[str, int]

    @message
    @dataclass
    class WithAny:
        result: Any = None

    _expect(WithDict, "table", "a dict has no fixed size; use a bounded list of a nested @message")
    _expect(WithAny, "result", "annotate the field with a concrete type")


def test_message_containing_itself() -> None:
    @message
    @dataclass
    class Node:
        label: Annotated[str, MaxLen(4)]
        child: Node | None = None

    _expect(Node, "child", r"contains itself \(.*Node -> .*Node\).*BufferRef or an id field")


def test_reserved_and_colliding_names() -> None:
    @message
    @dataclass
    class Keyword:
        float: int

    @message
    @dataclass
    class Collides:
        type_id: int

    @message
    @dataclass
    class Padding:
        _pad0: int

    for cls, name in ((Keyword, "float"), (Collides, "type_id"), (Padding, "_pad0")):
        _expect(cls, name, "rename it")


def test_mixed_fixed_tuple_and_header_types() -> None:
    @message
    @dataclass
    class Mixed:
        pair: tuple[int, float]

    @message
    @dataclass
    class BadHeader:
        priority: float = 1.0

    _expect(Mixed, "pair", "mixes item types.*use one item type")
    _expect(BadHeader, "priority", "header field priority must be annotated int")


def test_string_enum_needs_intenum() -> None:
    import enum

    class Mood(enum.Enum):
        HAPPY = "happy"

    @message
    @dataclass
    class Feeling:
        mood: Mood

    _expect(Feeling, "mood", "use an IntEnum")


def test_kernel_messages_must_be_laid_out_others_are_host_only(tmp_path: Any) -> None:
    from ringgen.codegen.build import plan

    module = tmp_path / "host_and_device.py"
    module.write_text(
        "from dataclasses import dataclass\n"
        "from typing import Annotated\n"
        "from ringgen import MaxLen, message, ring_kernel\n"
        "@message\n@dataclass\nclass Note:\n    text: str\n"
        "@message\n@dataclass\nclass Job:\n    items: list[int]\n"
        "@ring_kernel(kernel_id='jobs', input=Job, cuda='')\n"
        "def jobs(job: Job) -> None: ...\n"
    )
    with pytest.raises(SchemaError, match=r"host_and_device\.py:11: Job\.items: .*MaxLen"):
        plan([str(module)], tmp_path / "out")
    module.write_text(module.read_text().replace("list[int]", "Annotated[list[int], MaxLen(4)]"))
    import sys

    from ringgen.schema.modules import module_name
    sys.modules.pop(module_name(module.resolve()), None)
    p = plan([str(module)], tmp_path / "out")
    assert [m.name for m in p.schema.package.messages] == ["Job"]
    assert [h.name for h in p.schema.host_only] == ["Note"]


def test_ring_kernel_declaration_errors() -> None:
    @message
    @dataclass
    class In:
        x: int = 0

    with pytest.raises(SchemaError, match="power of two"):
        ring_kernel(kernel_id="k", input=In, cuda="", queue_size=1000)(lambda r: r)
    with pytest.raises(SchemaError, match="needs its handler as cuda="):
        ring_kernel(kernel_id="k", input=In)(lambda r: r)
    with pytest.raises(SchemaError, match="must be a C identifier"):
        ring_kernel(kernel_id="my-kernel", input=In, cuda="")(lambda r: r)
    with pytest.raises(SchemaError, match="must be a @message class"):
        ring_kernel(kernel_id="k", input=int, cuda="")(lambda r: r)  # type: ignore[arg-type]
