"""Compiling what codegen wrote: the CPU backend's kernel runners and host module (g++), and
cubins for the GPU (nvcc). Every artifact goes through the compile cache."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ringgen.errors import BackendUnavailableError, CompileError
from ringgen.toolchain.cache import cache_key, cached

log = logging.getLogger("ringgen.compile")

CODEC_MODULE = "_rg_codec"  # the name every package's codec module is built under
CXX_FLAGS = ("-std=c++17", "-O2", "-pthread", "-fno-strict-aliasing")
TSAN_FLAGS = ("-std=c++17", "-O1", "-g", "-pthread", "-fsanitize=thread")
# How a CPU runner is built: "debug" for a debugger (-O0 -g), "race-check" under ThreadSanitizer,
# "bus-baseline" with the data path before batches (rg_bus.h: RG_BUS_BASELINE), to measure it
# beside today's in one run (benchmarks/bench_bus.py).
RUNNER_FLAGS = {
    "release": CXX_FLAGS,
    "debug": ("-std=c++17", "-O0", "-g", "-pthread", "-fno-strict-aliasing"),
    "race-check": TSAN_FLAGS,
    "bus-baseline": (*CXX_FLAGS, "-DRG_BUS_BASELINE=1"),
}
NVCC_FLAGS = ("-std=c++17", "-O3")


def templates_dir() -> Path:
    return Path(str(resources.files("ringgen.templates")))


def cxx() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise BackendUnavailableError(
            "the CPU backend compiles kernels with a C++17 compiler and none was found; install "
            "g++ (e.g. `apt-get install g++`) or set CXX")
    return compiler


def nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return shutil.which("nvcc") or (str(Path(cuda_home, "bin", "nvcc"))
                                    if Path(cuda_home, "bin", "nvcc").exists() else None)


CCCL_DISTRIBUTION = "nvidia-cuda-cccl-cu12"  # ringgen's dependency that ships libcu++


def cccl_include() -> Path:
    """The libcu++ headers (<cuda/atomic>) that the ring protocol is written against."""
    for c in _cccl_candidates():
        if (c / "cuda" / "atomic").is_file():
            return c
    raise BackendUnavailableError(
        "libcu++ (<cuda/atomic>) was not found; reinstall ringgen (its nvidia-cuda-cccl "
        "dependency ships it), install the CUDA toolkit, or set RINGGEN_CCCL_INCLUDE")


def _cccl_candidates() -> list[Path]:
    """Absolute, installed locations only: RINGGEN_CCCL_INCLUDE, the CUDA toolkit, and the
    nvidia-cuda-cccl wheel where this interpreter installs packages. Not sys.path, whose first
    entry can be the current folder: a header planted there would be compiled into the runner
    and into the host module."""
    candidates = []
    explicit = os.environ.get("RINGGEN_CCCL_INCLUDE")
    if explicit:
        if not os.path.isabs(explicit):
            raise BackendUnavailableError(
                f"RINGGEN_CCCL_INCLUDE={explicit!r} is a relative path, which would be looked up "
                "in the current folder; set it to the absolute path of the libcu++ include folder")
        candidates.append(Path(explicit))
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.isabs(home):
            candidates += [Path(home, "include", "cccl"), Path(home, "include")]
    for dist in importlib.metadata.distributions(name=CCCL_DISTRIBUTION, path=_site_dirs()):
        candidates.append(Path(str(dist.locate_file("nvidia/cuda_cccl/include"))))
    return candidates


def _site_dirs() -> list[str]:
    """The folders this interpreter installs packages into (absolute, unlike sys.path[0])."""
    dirs = [*getattr(site, "getsitepackages", list)(),
            sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isabs(d)]


def _run(cmd: Sequence[str], what: str) -> str:
    """Runs a compiler; what it printed on stderr (ptxas' figures, with --resource-usage)."""
    log.info("%s: %s", what, " ".join(cmd))
    result = subprocess.run(list(cmd), capture_output=True, text=True)
    if result.returncode:
        raise CompileError(f"{what} failed:\n{result.stderr.strip()}\n(command: {' '.join(cmd)})",
                           command=list(cmd), output=result.stderr)
    return result.stderr


def _inputs(package_dir: Path, extra: Sequence[Path]) -> list[bytes]:
    """What a package's compile depends on: its sources' names and bytes, and the folder's
    absolute path, which the compiler writes into the artifact (__FILE__ of a failed assert
    names the header by the -I path): the same package in another checkout is another one."""
    files = sorted(p for p in package_dir.iterdir() if p.suffix in (".h", ".cu")) + list(extra)
    return [str(package_dir.resolve()).encode(),
            *(p.name.encode() + b"\0" + p.read_bytes() for p in files)]


@dataclass(frozen=True)
class Artifact:
    path: Path
    cached: bool


def compile_runner(package_dir: Path, kernel_id: str, build: str = "release") -> Artifact:
    """The CPU backend's process for one kernel: the kernel's .cu, the fiber runtime, main();
    `build` one of RUNNER_FLAGS."""
    source = package_dir / f"{kernel_id}.cu"
    if not source.is_file():
        raise CompileError(f"{source} does not exist; run `ringgen build` for its package")
    runtime = [templates_dir() / n for n in ("rg_cpu_runtime.cpp", "rg_cpu_runner.cpp", "rg_cpu_debug.cpp")]
    flags = [*RUNNER_FLAGS[build], f"-DRG_ENTRY={kernel_id}_ring_kernel"]
    compiler = cxx()
    cccl = cccl_include()
    key = cache_key([*_inputs(package_dir, runtime), kernel_id.encode()], flags, compiler, [cccl])

    def produce(out: Path) -> None:
        _run([compiler, *flags, f"-I{package_dir}", f"-I{cccl}", "-x", "c++",
              str(source), *map(str, runtime), "-o", str(out)],
             f"compiling kernel {kernel_id!r} for the CPU backend")

    path, hit = cached(key, ".runner", produce)
    return Artifact(path, hit)


def compile_host_module() -> Artifact:
    """_rg_host, the Python extension module (pybind11) that drives regions from the host."""
    import pybind11

    source = templates_dir() / "rg_host.cpp"
    headers = [templates_dir() / n
               for n in ("rg_host.h", "rg_ring.h", "rg_state.h", "rg_route.h", "rg_platform.h")]
    # The headers of templates_dir() that the module includes are keyed by content above.
    searched = [cccl_include(), Path(pybind11.get_include()), Path(sysconfig.get_paths()["include"])]
    flags = [*CXX_FLAGS, "-shared", "-fPIC", "-fvisibility=hidden"]
    compiler = cxx()
    abi = f"{sys.implementation.cache_tag} pybind11 {pybind11.__version__}".encode()
    key = cache_key([abi, *(p.read_bytes() for p in (source, *headers))], flags, compiler, searched)

    def produce(out: Path) -> None:
        _run([compiler, *flags, f"-I{templates_dir()}", *(f"-I{d}" for d in searched), str(source),
              "-o", str(out)],
             "compiling the host ring module")

    path, hit = cached(key, ".so", produce)
    return Artifact(path, hit)


def compile_codec_module(package_dir: Path) -> Artifact | None:
    """The package's generated C codecs (its `<package>_codec.h`) as a Python extension module
    (templates/rg_codec_module.cpp): msgpack <-> C struct, one native call per message. None
    for a package without codecs (no message with a C layout)."""
    headers = sorted(package_dir.glob("*_codec.h"))
    if len(headers) != 1:
        return None
    header = headers[0]
    messages = re.findall(r"^#define RG_MAX_PACKED_(\w+) ", header.read_text(), re.MULTILINE)
    if not messages:
        return None
    source = templates_dir() / "rg_codec_module.cpp"
    python = Path(sysconfig.get_paths()["include"])
    flags = [*CXX_FLAGS, "-shared", "-fPIC", "-fvisibility=hidden",
             f"-DRG_CODEC_MODULE={CODEC_MODULE}", "-DRG_MESSAGES=" + " ".join(f"X({m})" for m in messages)]
    compiler = cxx()
    abi = sys.implementation.cache_tag.encode()
    # Keyed by the headers' content, not the folder: nothing of the path reaches this module
    # (no assert), and each test's or tool's own copy of a package would otherwise compile it.
    headers_in = sorted(p for p in package_dir.iterdir() if p.suffix == ".h")
    key = cache_key([abi, source.read_bytes(),
                     *(p.name.encode() + b"\0" + p.read_bytes() for p in headers_in)],
                    flags, compiler, [python])

    def produce(out: Path) -> None:
        _run([compiler, *flags, f"-I{package_dir}", f"-I{python}", "-include", str(header),
              str(source), "-o", str(out)],
             f"compiling the C codecs of {package_dir} into a host module")

    path, hit = cached(key, ".so", produce)
    return Artifact(path, hit)


def cubin_key(package_dir: Path, kernel_id: str, arch: str = "sm_90") -> str:
    """The cache key of the kernel's cubin, and of ptxas' report on it (toolchain/resources.py)."""
    compiler = nvcc()
    if compiler is None:
        raise BackendUnavailableError("nvcc was not found; install the CUDA toolkit or set CUDA_HOME")
    return cache_key([*_inputs(package_dir, []), kernel_id.encode()], _cubin_flags(arch), compiler)


def _cubin_flags(arch: str) -> list[str]:
    # --resource-usage: ptxas -v's figures per function, read by toolchain/resources.py.
    return [*NVCC_FLAGS, f"-arch={arch}", "-cubin", "--resource-usage"]


def cubin_report(package_dir: Path, kernel_id: str, arch: str, out: Path) -> str:
    """Compiles the kernel's cubin to `out`; ptxas' report on it."""
    compiler = nvcc()
    if compiler is None:
        raise BackendUnavailableError("nvcc was not found; install the CUDA toolkit or set CUDA_HOME")
    source = package_dir / f"{kernel_id}.cu"
    return _run([compiler, *_cubin_flags(arch), f"-I{package_dir}", str(source), "-o", str(out)],
                f"compiling kernel {kernel_id!r} with nvcc for {arch}")


def compile_cubin(package_dir: Path, kernel_id: str, arch: str = "sm_90") -> Artifact:
    """The kernel as a cubin for `arch`, as the CUDA backend loads it; ptxas' report on it is
    cached beside it under the same key."""
    key = cubin_key(package_dir, kernel_id, arch)

    def produce(out: Path) -> None:
        report = cubin_report(package_dir, kernel_id, arch, out)

        def keep_report(o: Path) -> None:
            o.write_text(report)

        cached(key, f".{arch}.ptxas.txt", keep_report)

    path, hit = cached(key, f".{arch}.cubin", produce)
    return Artifact(path, hit)
