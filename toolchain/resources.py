"""What a kernel's block asks of the GPU, as ptxas reports it for the cubin (registers, spills,
static shared memory, stack), and the sm_90 limits a block must fit to launch at all.

The figures come from ptxas (`nvcc --resource-usage`), not from our templates: whatever the
kernel loop keeps in shared memory, ptxas counts it. They are cached with the cubin (same key)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ringgen.errors import CompileError
from ringgen.toolchain import compile as cc
from ringgen.toolchain.cache import cached

# sm_90, per block: the static shared memory a kernel may declare (more needs dynamic shared
# memory and an opt-in), the threads, and the register file a resident block draws from
# (registers are handed out per warp in units of 256).
STATIC_SHARED_MAX = 48 * 1024
THREADS_MAX = 1024
REGISTER_FILE = 64 * 1024
REGISTER_UNIT = 256
WARP = 32


@dataclass(frozen=True)
class KernelResources:
    """ptxas' figures for one entry function. `refused`: ptxas rejected the kernel (its static
    shared memory over the limit); then only `shared_static` is known."""

    function: str
    registers: int = 0
    shared_static: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    refused: bool = False

    def problems(self, block: int) -> list[str]:
        """Why a block of `block` threads cannot be resident on sm_90; empty if it can."""
        out = []
        if self.shared_static > STATIC_SHARED_MAX:
            out.append(f"static shared memory {self.shared_static:,} bytes > {STATIC_SHARED_MAX:,} "
                       "(48 KB)")
        if block > THREADS_MAX:
            out.append(f"{block} threads per block > {THREADS_MAX}")
        warps = -(-block // WARP)
        per_warp = -(-self.registers * WARP // REGISTER_UNIT) * REGISTER_UNIT
        if warps * per_warp > REGISTER_FILE:
            out.append(f"{self.registers} registers x {block} threads need {warps * per_warp:,} "
                       f"registers > {REGISTER_FILE:,} in the register file")
        return out


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_TOO_MUCH = re.compile(r"Entry function '([^']+)' uses too much shared data \((0x[0-9a-fA-F]+) bytes")


def parse_ptxas(text: str) -> dict[str, KernelResources]:
    """Entry function -> its figures, from ptxas' -v output (what nvcc --resource-usage prints),
    including a refusal for too much shared data."""
    found: dict[str, dict[str, object]] = {}
    entry = props = None
    for line in text.splitlines():
        if m := _TOO_MUCH.search(line):
            found[m[1]] = {"shared_static": int(m[2], 16), "refused": True}
        elif m := _ENTRY.search(line):
            entry = m[1]
            found.setdefault(entry, {})
        elif m := _PROPERTIES.search(line):
            props = m[1]
        elif (m := _FRAME.search(line)) and props in found:
            found[props].update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        elif (m := _USED.search(line)) and entry is not None:
            smem = _SMEM.search(line)
            found[entry].update(registers=int(m[1]), shared_static=int(smem[1]) if smem else 0)
    return {name: KernelResources(name, **figures) for name, figures in found.items()}  # type: ignore[arg-type]


def kernel_resources(package_dir: Path, kernel_id: str, arch: str = "sm_90") -> KernelResources:
    """The figures of kernel `kernel_id`'s cubin: compiled (or found in the cache) by
    compile_cubin, whose ptxas report is cached beside it. A kernel ptxas refuses for its shared
    memory gives `refused` figures; any other compile error is raised."""
    entry = f"{kernel_id}_ring_kernel"
    try:
        cc.compile_cubin(package_dir, kernel_id, arch)
    except CompileError as e:
        refused = parse_ptxas(e.output).get(entry)
        if refused is None or not refused.refused:
            raise
        return refused

    def produce(out: Path) -> None:  # a cubin cached before its report was: compile once more
        with tempfile.TemporaryDirectory(prefix="ringgen-ptxas-") as scratch:
            out.write_text(cc.cubin_report(package_dir, kernel_id, arch, Path(scratch) / "k.cubin"))

    path, _ = cached(cc.cubin_key(package_dir, kernel_id, arch), f".{arch}.ptxas.txt", produce)
    figures = parse_ptxas(path.read_text()).get(entry)
    if figures is None:
        raise CompileError(f"ptxas reported no figures for {entry}:\n{path.read_text()}")
    return figures
