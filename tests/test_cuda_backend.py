"""The CUDA backend where no GPU is: its kernel sources compile for sm_90, the cubin it would
load is the bytes nvcc makes, and asking for it says what is missing and how to fix it."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, have_nvcc

from ringgen import BackendUnavailableError, RingKernelRuntime
from ringgen.runtime.backends import cuda
from ringgen.runtime.backends.select import resolve_backend
from ringgen.toolchain.compile import NVCC_FLAGS, compile_cubin, nvcc
from ringgen.toolchain.resources import KernelResources, kernel_resources


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_the_backends_cubin_and_its_figures_are_nvccs(tmp_path: Path) -> None:
    """The cubin is the bytes nvcc makes, and the figures cached with it are ptxas' own."""
    package = ROOT / "generated" / "worker"
    artifact = compile_cubin(package, "worker", "sm_90")
    direct = tmp_path / "worker.cubin"
    compiler = nvcc()
    assert compiler is not None
    ptxas = subprocess.run([compiler, *NVCC_FLAGS, "-arch=sm_90", "-cubin", "-Xptxas", "-v",
                            f"-I{package}", str(package / "worker.cu"), "-o", str(direct)],
                           check=True, capture_output=True, text=True).stderr
    assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == \
        hashlib.sha256(direct.read_bytes()).hexdigest()
    figures = kernel_resources(package, "worker")
    used = re.search(r"Used (\d+) registers.* (\d+) bytes smem", ptxas)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", ptxas)
    assert used and frame, ptxas
    assert (figures.registers, figures.shared_static) == (int(used[1]), int(used[2]))
    assert (figures.stack, figures.spill_stores, figures.spill_loads) == tuple(map(int, frame.groups()))
    assert not figures.problems(128) and "1025 threads per block > 1024" in figures.problems(1025)
    # Registers go to a warp 256 at a time: 255 of them fit 8 warps of the 64 K file, not 9.
    assert not KernelResources("k", registers=255).problems(256)
    assert KernelResources("k", registers=255).problems(288) == [
        "255 registers x 288 threads need 73,728 registers > 65,536 in the register file"]

    # `ringgen inspect --resources` prints them (the package is generated/'s, so a cache hit).
    out = subprocess.run([sys.executable, "-m", "ringgen", "inspect", str(ROOT / "examples" / "worker.py"),
                          "--resources", "-o", str(ROOT / "generated")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (f"kernel worker (sm_90, block 128): {figures.registers} registers, static shared memory "
            f"{figures.shared_static:,} B, stack {figures.stack:,} B, spills {figures.spill_stores:,} B "
            f"stored / {figures.spill_loads:,} B loaded") in out.stdout.splitlines()


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_a_block_over_48kb_of_shared_memory_fails_the_build(tmp_path: Path) -> None:
    """A MaxLen(20000) float list is over 156 KB of shared memory even in a batch of one (the
    request and its response): a build error that names the message, its size and the fix,
    found from the layout before nvcc runs (ptxas' figures check what the layout cannot see)."""
    schema = ROOT / "tests" / "schemas" / "oversize.py"
    out = subprocess.run([sys.executable, "-m", "ringgen", "build", str(schema), "-o", str(tmp_path / "gen"),
                          "--target", "cuda"], capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("ringgen build: error: kernel 'sum_samples': a batch of 1 request(s) "
                            "holds 1 x (Samples 160,048 + Total 48) = 160,096 bytes in shared "
                            "memory, over the 49,152 bytes (48 KB) of static shared memory"), error
    assert ("Fix: a smaller MaxLen on Samples.values (rg_list_f64_20000, 160,008 bytes) or a "
            "BufferRef for the bulk data") in error
    assert not (tmp_path / "gen").exists() or not list((tmp_path / "gen").rglob("*.cubin"))


@pytest.mark.skipif(cuda.probe() is None, reason="a usable GPU is here")
def test_cuda_unavailable_says_why_and_auto_falls_back() -> None:
    problem = cuda.probe()
    assert problem is not None and ("pip install 'ringgen[cuda]'" in problem or "driver" in problem)
    with pytest.raises(BackendUnavailableError, match="cuda backend is not usable here"):
        resolve_backend("cuda")
    assert resolve_backend("auto") == "cpu"

    async def main() -> str:
        async with RingKernelRuntime(backend="auto") as rt:
            return rt.backend

    import asyncio
    assert asyncio.run(main()) == "cpu"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tpu")
