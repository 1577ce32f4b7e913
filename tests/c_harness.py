"""A compiled C++ harness around a generated package's codec, driven over pipes.

Requests on stdin: op ('P' pack a struct, 'U' unpack msgpack), message index (u32), length
(u32), bytes. Replies on stdout: result code (i64), length (u32), bytes (the msgpack bytes of a
pack; the struct of an unpack). Input is copied into a buffer of exactly its length, so
AddressSanitizer catches any read past the end.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from conftest import compile_cpp

from ringgen.codegen.ir import PackageIR

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def harness_source(pkg: PackageIR) -> str:
    cases = []
    for i, m in enumerate(pkg.messages):
        cases.append(f"""
        case {i}:
            if (op == 'P') {{
                {m.name} msg;
                if (len != sizeof msg) return 2;
                memcpy(&msg, in.get(), sizeof msg);
                out.resize(RG_MAX_PACKED_{m.name});
                rc = rg_pack_{m.name}(&msg, out.data(), out.size());
                out.resize(rc > 0 ? (size_t)rc : 0);
            }} else {{
                {m.name} msg;
                rc = rg_unpack_{m.name}(in.get(), len, &msg);
                out.assign((uint8_t*)&msg, (uint8_t*)&msg + sizeof msg);
            }}
            break;""")
    return f"""#include "{pkg.name}_codec.h"
#include <cstdio>
#include <memory>
#include <vector>

static bool read_exact(void* p, size_t n) {{ return fread(p, 1, n, stdin) == n; }}

int main() {{
    for (;;) {{
        uint8_t op;
        uint32_t index, len;
        if (!read_exact(&op, 1)) return 0;
        if (!read_exact(&index, 4) || !read_exact(&len, 4)) return 3;
        std::unique_ptr<uint8_t[]> in(new uint8_t[len ? len : 1]);
        if (len && !read_exact(in.get(), len)) return 3;
        std::vector<uint8_t> out;
        int64_t rc = -100;
        switch (index) {{{"".join(cases)}
            default: return 4;
        }}
        uint32_t n = (uint32_t)out.size();
        fwrite(&rc, 8, 1, stdout);
        fwrite(&n, 4, 1, stdout);
        if (n) fwrite(out.data(), 1, n, stdout);
        fflush(stdout);
    }}
}}
"""


class CodecHarness:
    def __init__(self, pkg: PackageIR, package_dir: Path, work: Path, sanitize: bool = True):
        self.index = {m.name: i for i, m in enumerate(pkg.messages)}
        source = work / f"{pkg.name}_harness.cpp"
        source.write_text(harness_source(pkg))
        binary = work / f"{pkg.name}_harness"
        compile_cpp([source], binary, [package_dir], SANITIZE if sanitize else [])
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _call(self, op: bytes, name: str, data: bytes) -> tuple[int, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(op + struct.pack("<II", self.index[name], len(data)) + data)
        self.proc.stdin.flush()
        head = self.proc.stdout.read(12)
        if len(head) != 12:
            raise AssertionError(f"the harness died (exit {self.proc.wait()}): a crash or a "
                                 "sanitizer report, see the captured stderr")
        rc, n = struct.unpack("<qI", head)
        return rc, self.proc.stdout.read(n)

    def pack(self, name: str, struct_bytes: bytes) -> tuple[int, bytes]:
        return self._call(b"P", name, struct_bytes)

    def unpack(self, name: str, data: bytes) -> tuple[int, bytes]:
        return self._call(b"U", name, data)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
