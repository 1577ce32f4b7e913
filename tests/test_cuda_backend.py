"""The CUDA backend where no GPU is: its kernel sources compile for sm_90, the cubin it would
load is the bytes nvcc makes, and asking for it says what is missing and how to fix it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, have_nvcc

from ringgen import BackendUnavailableError, RingKernelRuntime
from ringgen.runtime.backends import cuda
from ringgen.runtime.backends.select import resolve_backend
from ringgen.toolchain.compile import NVCC_FLAGS, compile_cubin, nvcc


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_the_backends_cubin_is_nvccs(tmp_path: Path) -> None:
    package = ROOT / "generated" / "worker"
    artifact = compile_cubin(package, "worker", "sm_90")
    direct = tmp_path / "worker.cubin"
    compiler = nvcc()
    assert compiler is not None
    subprocess.run([compiler, *NVCC_FLAGS, "-arch=sm_90", "-cubin", f"-I{package}",
                    str(package / "worker.cu"), "-o", str(direct)], check=True)
    assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == \
        hashlib.sha256(direct.read_bytes()).hexdigest()


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
