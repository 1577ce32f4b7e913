"""The C API a handler is written against: enum constants generated in C with Python's values,
the bounded-field helpers of rg_kernel.h run on the CPU backend, and a handler of the wrong
name or signature answered with the signature it should have."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import build_package, compile_cpp

from ringgen.codecs import struct_columns as structs
from ringgen.errors import CompileError
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.cpu import CpuKernel
from ringgen.toolchain.compile import cccl_include, compile_runner

TAGGER = '''
import enum
from dataclasses import dataclass
from typing import Annotated
from ringgen import MaxLen, message, ring_kernel

class Unit(enum.IntEnum):
    CELSIUS = 0
    KELVIN = 7
    RANKINE = -3

@message
@dataclass
class Reading:
    unit: Unit
    name: Annotated[str, MaxLen(6)]
    values: Annotated[list[int], MaxLen(4)]
    raw: Annotated[bytes, MaxLen(2)] = b"\\xff"

@message
@dataclass
class Tagged:
    unit: Unit = Unit.CELSIUS
    tag: Annotated[str, MaxLen(5)] = ""
    copied: Annotated[list[int], MaxLen(2)] = ()
    grown: Annotated[list[int], MaxLen(5)] = ()
    checks: Annotated[list[bool], MaxLen(4)] = ()

CU = r"""
__device__ bool tagger_handle(const Reading& req, Tagged& resp, rg_ctx& ctx) {
    if (threadIdx.x != 0) return false;
    resp.unit = req.unit == Unit_KELVIN ? Unit_RANKINE : Unit_KELVIN;
    bool fit = rg_str_set(resp.tag, "hell\\xc3\\xa9");   // 6 bytes into 5: not half an é
    bool all = rg_list_copy(resp.copied, req.values);
    rg_list_copy(resp.grown, req.values);
    bool room = rg_list_append(resp.grown, (int64_t)99);
    rg_list_append(resp.checks, fit);
    rg_list_append(resp.checks, all);
    rg_list_append(resp.checks, room);
    rg_list_append(resp.checks, rg_str_eq(req.name, "probe") && !rg_str_eq(req.name, "prob")
                               && rg_str_equal(req.name, req.name) && rg_str_eq(req.raw, "\\xff")
                               && !rg_str_equal(req.raw, req.name));
    return true;
}
"""

@ring_kernel(kernel_id="tagger", input=Reading, output=Tagged, cuda=CU)
def tagger(req: Reading) -> Tagged: ...
'''


@pytest.fixture(scope="module")
def tagger_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("tagger")
    (folder / "tagger.py").write_text(TAGGER)
    return build_package(str(folder / "tagger.py"), folder / "gen")


def test_enum_constants_compile_in_c_with_pythons_values(tagger_pkg: Any, tmp_path: Path) -> None:
    unit = tagger_pkg.Unit  # re-exported by the generated package
    assert [(m.name, m.value) for m in unit] == [("CELSIUS", 0), ("KELVIN", 7), ("RANKINE", -3)]
    program = tmp_path / "enums.cpp"
    program.write_text('#include <cstdio>\n#include "tagger_messages.h"\nint main() {\n'
                       + "".join(f'    printf("{m.name} %d\\n", (int)Unit_{m.name});\n' for m in unit)
                       + "}\n")
    compile_cpp([program], tmp_path / "enums", [tagger_pkg.package.path, cccl_include()])
    out = subprocess.run([str(tmp_path / "enums")], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:-1] == [f"{m.name} {m.value}" for m in unit]


def test_bounded_field_helpers_in_a_handler(tagger_pkg: Any) -> None:
    kernel = CpuKernel(tagger_pkg.package.kernel("tagger"))
    try:
        kernel.activate()
        requests = [tagger_pkg.Reading(unit=tagger_pkg.Unit.KELVIN, name="probe", values=[1, 2, 3]),
                    tagger_pkg.Reading(unit=tagger_pkg.Unit.CELSIUS, name="prob", values=[4, 5, 6, 7])]
        kernel.push(0, rings.LANE_OF[128], structs.pack(tagger_pkg.Reading, kernel.info.in_dtype,
                                                        requests))
        got: list[Any] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += structs.unpack(tagger_pkg.Tagged, kernel.pop(2 - len(got), timeout=0.5))
    finally:
        kernel.terminate()
    unit = tagger_pkg.Unit
    assert [(r.unit, r.tag, r.copied, r.grown, r.checks) for r in got] == [
        (unit.RANKINE, "hell", [1, 2], [1, 2, 3, 99], [False, False, True, True]),
        (unit.KELVIN, "hell", [4, 5], [4, 5, 6, 7, 99], [False, False, True, False]),
    ]


@pytest.mark.parametrize(("name", "handler", "output"), [
    ("misnamed",
     "__device__ bool tagger_handler(const Reading& req, Tagged& resp, rg_ctx& ctx) { return true; }",
     "Tagged"),
    ("non_const_request",
     "__device__ bool tagger_handle(Reading& req, Tagged& resp, rg_ctx& ctx) { return true; }",
     "Tagged"),
    ("returns_bool_for_no_output",
     "__device__ bool tagger_handle(const Reading& req, rg_ctx& ctx) { return true; }", None),
])
def test_a_wrong_handler_is_told_the_signature_it_needs(tmp_path: Path, name: str, handler: str,
                                                         output: str | None) -> None:
    source = TAGGER.split("CU = ")[0] + f'CU = r"""\n{handler}\n"""\n' + (
        f"@ring_kernel(kernel_id='tagger', input=Reading, output={output}, cuda=CU)\n"
        "def tagger(req: Reading) -> None: ...\n")
    (tmp_path / f"{name}.py").write_text(source)
    pkg: Any = build_package(str(tmp_path / f"{name}.py"), tmp_path / "gen")
    expected = ("__device__ bool tagger_handle(const Reading& req, Tagged& resp, rg_ctx& ctx)"
                if output else "__device__ void tagger_handle(const Reading& req, rg_ctx& ctx)")
    with pytest.raises(CompileError) as info:
        compile_runner(pkg.package.path, "tagger")
    assert expected in str(info.value), str(info.value)[-3000:]
