"""Shared test helpers: golden-file updating, compilers, and small C harness builds."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*/out and generated/ from the current code")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups from the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the tests that share a module-scoped fixture (a
    package built, and compiled on first launch, for the module) run on one worker: the compile
    cache keys a package on its folder's absolute path, and each worker's folders are its own,
    so a module spread over two workers would build and compile its package twice."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group") is not None:
            continue
        if any(defs[-1].scope == "module" for defs in info.name2fixturedefs.values() if defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def have_nvcc() -> bool:
    return shutil.which("nvcc") is not None


def compile_cpp(sources: Sequence[Path], output: Path, includes: Sequence[Path],
                extra: Sequence[str] = ()) -> None:
    """g++ with every warning an error; raises with the compiler's output on failure."""
    cmd = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
           *(f"-I{i}" for i in includes), *extra, *map(str, sources), "-o", str(output)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"{' '.join(cmd)}\n{result.stderr}")


def compile_nvcc(source: Path, output: Path, includes: Sequence[Path]) -> None:
    """nvcc -cubin for sm_90, as the CUDA backend compiles a kernel (toolchain/compile.py): the
    device code only. A .cu's host side is never compiled in production (the host module is
    g++'s), and skipping it halves nvcc's time (cudafe++ and the host compiler)."""
    cmd = ["nvcc", "-arch=sm_90", "-std=c++17", "-Werror", "all-warnings",
           *(f"-I{i}" for i in includes), "-cubin", str(source), "-o", str(output)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"{' '.join(cmd)}\n{result.stderr}")


def each_at_once(compile_one: Callable[[Path], None], sources: Sequence[Path]) -> None:
    """compile_one(source) for every source, as many at once as this test process's share of
    the cores (pytest-xdist runs one process per core): a compiler is one mostly single-threaded
    process per file, and these are the suite's longest compiles. Every failure is raised, each
    with its compiler output."""
    from concurrent.futures import ThreadPoolExecutor

    def one(source: Path) -> str | None:
        try:
            compile_one(source)
        except AssertionError as e:
            return str(e)
        return None

    test_processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) // test_processes)) as pool:
        failures = [f for f in pool.map(one, sources) if f is not None]
    if failures:
        raise AssertionError("\n\n".join(failures))


def compile_nvcc_each(sources: Sequence[Path], out_dir: Path) -> None:
    """compile_nvcc of each source, its folder on the include path, at once (each_at_once)."""
    each_at_once(lambda source: compile_nvcc(source, out_dir / f"{source.parent.name}_{source.stem}.cubin",
                                             [source.parent]), sources)


def import_package(package_dir: Path, alias: str | None = None) -> object:
    """Import a generated package from its folder under a unique module name."""
    import importlib.util
    import sys

    name = alias or f"rg_test_{package_dir.parent.name}_{package_dir.name}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_package(module: str, out_dir: Path) -> object:
    """`ringgen build MODULE -o out_dir` (no compile) and import the package."""
    from ringgen.codegen.build import plan
    from ringgen.codegen.writer import write_package

    p = plan([module], out_dir)
    write_package(p.package_dir, p.files())
    return import_package(p.package_dir, f"rg_built_{out_dir.parent.name}_{p.package_dir.name}")


def shared_package(module: str, name: str, tmp_path_factory: pytest.TempPathFactory) -> object:
    """`module` built once for the whole run in one folder that every pytest-xdist worker
    shares: the compile cache keys a package on its folder, so the workers compile each of its
    kernels once between them."""
    import fcntl

    from ringgen.codegen.build import plan
    from ringgen.codegen.writer import write_package

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: gw*'s parent
    p = plan([module], shared / f"{name}-shared" / "gen")
    written = shared / f"{name}-shared" / "written"
    with open(shared / f"{name}-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker writes it; the others wait for it
        if not written.exists():
            write_package(p.package_dir, p.files())
            written.touch()
    return import_package(p.package_dir, f"rg_built_{name}_shared")


@pytest.fixture(scope="session")
def kernels_pkg(tmp_path_factory: pytest.TempPathFactory) -> object:
    """schemas.kernels, the package most test modules launch (shared_package)."""
    return shared_package("schemas.kernels", "kernels", tmp_path_factory)


@pytest.fixture(scope="session")
def worker_pkg() -> object:
    return import_package(ROOT / "generated" / "worker", "rg_generated_worker")


def _cuda_problem() -> str | None:
    from ringgen.runtime.backends import cuda

    return cuda.probe()


BACKENDS = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        _cuda_problem() is not None, reason=f"cuda backend unusable: {_cuda_problem()}")),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def generated_package(name: str) -> object:
    return import_package(ROOT / "generated" / name, f"rg_generated_{name}")


async def receive_n(rt: Any, kernel_id: str, n: int) -> list[Any]:
    """n responses of `kernel_id`, however many receive_many() calls they take (10 s each)."""
    got: list[Any] = []
    while len(got) < n:
        batch = await rt.receive_many(kernel_id, n - len(got), timeout=10.0)
        assert batch, f"{kernel_id}: only {len(got)} of {n} responses"
        got += batch
    return got
