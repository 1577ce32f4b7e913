"""The generated C: it compiles (g++ -Werror, nvcc sm_90), its layout is the numpy dtype's, its
serializers write exactly msg.serialize()'s bytes and survive hostile input under sanitizers."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from c_harness import CodecHarness
from conftest import compile_cpp, compile_nvcc, have_nvcc, import_package
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringgen.codecs import struct_columns as structs
from ringgen.codegen.build import Plan, plan
from ringgen.codegen.writer import write_package
from ringgen.verify import message_strategy

# .example() draws the seed messages of the fuzz and key tests: fine outside @given.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

CASES = ["schemas.everything", "schemas.widths", "schemas.seed_messages"]


class Built:
    def __init__(self, p: Plan, package: Any, harness: CodecHarness | None = None):
        self.plan, self.package, self.harness = p, package, harness
        self.pkg = p.schema.package
        self.dir = p.package_dir


@pytest.fixture(scope="module", params=CASES)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("c_codec")
    p = plan([request.param], out / "gen")
    write_package(p.package_dir, p.files())
    package = import_package(p.package_dir, f"rg_c_codec_{p.package_dir.name}")
    b = Built(p, package, CodecHarness(p.schema.package, p.package_dir, out))
    yield b
    assert b.harness is not None
    b.harness.close()


def _kernel_like_tu(b: Built) -> str:
    calls = "\n".join(
        f"    {{ {m.name} m{i}{{}}; uint8_t buf{i}[RG_MAX_PACKED_{m.name}];\n"
        f"      int64_t n{i} = rg_pack_{m.name}(&m{i}, buf{i}, sizeof buf{i});\n"
        f"      if (n{i} > 0) out[{i}] = rg_unpack_{m.name}(buf{i}, (size_t)n{i}, &m{i}); }}"
        for i, m in enumerate(b.pkg.messages))
    return (f'#include "{b.pkg.name}_codec.h"\n'
            "#ifdef __CUDACC__\n__global__\n#endif\n"
            f"void pack_all(int64_t* out) {{\n{calls}\n}}\n"
            "#ifndef __CUDACC__\nint main() { int64_t out[64] = {0}; pack_all(out); return 0; }\n"
            "#endif\n")


def test_headers_compile_with_gpp_werror(built: Built, tmp_path: Path) -> None:
    src = tmp_path / "tu.cpp"
    src.write_text(_kernel_like_tu(built))
    compile_cpp([src], tmp_path / "tu", [built.dir], ["-Wpedantic", "-Wconversion"])


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_headers_compile_with_nvcc_for_sm90_device_code(built: Built, tmp_path: Path) -> None:
    src = tmp_path / "tu.cu"
    src.write_text(_kernel_like_tu(built))
    compile_nvcc(src, tmp_path / "tu.cubin", [built.dir])


def test_c_layout_equals_numpy_dtypes(built: Built, tmp_path: Path) -> None:
    lines = []
    for s in built.pkg.structs:
        lines.append(f'    printf("%s %zu\\n", "{s.c_name}", sizeof({s.c_name}));')
        lines += [f'    printf("%s.%s %zu\\n", "{s.c_name}", "{m.name}", offsetof({s.c_name}, {m.name}));'
                  for m in s.fields]
    src = tmp_path / "probe.cpp"
    src.write_text(f'#include "{built.pkg.name}_messages.h"\n#include <cstdio>\n'
                   f'int main() {{\n{chr(10).join(lines)}\n}}\n')
    compile_cpp([src], tmp_path / "probe", [built.dir])
    import subprocess
    probed = dict(line.rsplit(" ", 1) for line in
                  subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    by_name = {s.c_name: s for s in built.pkg.structs}

    def check(dtype: np.dtype, c_name: str) -> None:
        assert dtype.itemsize == int(probed[c_name]), c_name
        assert dtype.fields is not None
        for member in by_name[c_name].fields:
            sub, offset = dtype.fields[member.name][:2]
            assert offset == int(probed[f"{c_name}.{member.name}"]), f"{c_name}.{member.name}"
            base = sub.base if sub.shape else sub
            if base.fields is not None and member.c_type in by_name:
                check(base, member.c_type)

    for m in built.pkg.messages:
        check(built.package.DTYPES[m.name], m.name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(st.data())
def test_c_pack_equals_python_serialize_and_unpack_inverts_it(built: Built,
                                                              data: st.DataObject) -> None:
    assert built.harness is not None
    for m in built.pkg.messages:
        cls = built.package.package.classes[m.name]
        msg = data.draw(message_strategy(cls, for_codecs=True), label=m.name)
        as_struct = structs.pack(cls, built.package.DTYPES[m.name], [msg])
        rc, packed = built.harness.pack(m.name, as_struct.tobytes())
        expected = msg.serialize()
        assert rc == len(expected), f"rg_pack_{m.name} returned {rc}"
        assert packed == expected, f"{m.name}: C {packed.hex()} != Python {expected.hex()}"
        rc, raw = built.harness.unpack(m.name, expected)
        assert rc == len(expected), f"rg_unpack_{m.name} returned {rc}"
        assert raw == as_struct.tobytes()
        assert structs.unpack(cls, np.frombuffer(raw, dtype=built.package.DTYPES[m.name])) == [msg]


def test_c_unpack_skips_unknown_keys_and_fills_defaults(built: Built) -> None:
    assert built.harness is not None
    for m in built.pkg.messages:
        cls = built.package.package.classes[m.name]
        wire = msgpack.unpackb(message_strategy(cls, for_codecs=True).example().serialize())
        wire = {"zz_unknown": {"nested": [1, 2.5, b"x"]}, **wire, 7: "int key"}
        rc, _ = built.harness.unpack(m.name, msgpack.packb(wire))
        assert rc > 0
        required = [f.name for f in m.fields if f.default_c is None]
        if required:
            del wire[required[0]]
            rc, _ = built.harness.unpack(m.name, msgpack.packb(wire))
            assert rc == -6  # RG_MP_ERR_MISSING


def test_c_unpack_rejects_out_of_bound_values(built: Built) -> None:
    assert built.harness is not None
    for m in built.pkg.messages:
        cls = built.package.package.classes[m.name]
        wire = msgpack.unpackb(message_strategy(cls, for_codecs=True).example().serialize())
        for f in m.body_fields:
            if f.ctype.kind in ("str", "bytes", "list"):
                too_long: Any = {"str": "x" * (f.ctype.bound + 1), "bytes": b"x" * (f.ctype.bound + 1),
                                 "list": [None] * (f.ctype.bound + 1)}[f.ctype.kind]
                rc, _ = built.harness.unpack(m.name, msgpack.packb({**wire, f.name: too_long}))
                assert rc == -4, f"{m.name}.{f.name}"  # RG_MP_ERR_BOUND


def test_c_unpack_survives_random_and_mutated_input(built: Built) -> None:
    """Under AddressSanitizer and UBSan: any input gives a result code, never a crash."""
    assert built.harness is not None
    rng = random.Random(1234)
    for m in built.pkg.messages:
        cls = built.package.package.classes[m.name]
        seeds = [message_strategy(cls, for_codecs=True).example().serialize() for _ in range(5)]
        for i in range(600):
            if i % 3 == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
            else:
                buf = bytearray(rng.choice(seeds))
                for _ in range(rng.randrange(1, 5)):
                    pos = rng.randrange(len(buf))
                    action = rng.randrange(3)
                    if action == 0:
                        buf[pos] = rng.randrange(256)
                    elif action == 1:
                        del buf[pos:]
                    else:
                        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
                    if not buf:
                        break
                data = bytes(buf)
            rc, _ = built.harness.unpack(m.name, data)
            assert rc < 0 or rc == len(data)
