"""The `ringgen` command: version, help, build (idempotent), check, inspect, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SCHEMA = ROOT / "tests" / "schemas" / "widths.py"


def _ringgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringgen", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_version_and_help() -> None:
    from ringgen import __version__

    assert _ringgen("--version").stdout.strip() == f"ringgen {__version__}"
    out = _ringgen("--help")
    assert out.returncode == 0 and "build" in out.stdout and "inspect" in out.stdout
    assert shutil.which("ringgen") or True  # the console script is installed by pip -e


def test_build_check_and_rebuild_does_no_work(tmp_path: Path) -> None:
    module = tmp_path / "shapes_cli.py"
    module.write_text(SCHEMA.read_text().replace("class Widths", "class Shape"))
    first = _ringgen("build", str(module), "-o", str(tmp_path / "gen"))
    assert first.returncode == 0, first.stderr
    assert "wrote 13 file(s)" in first.stdout
    package = tmp_path / "gen" / "shapes_cli"
    assert {p.name for p in package.iterdir()} == {
        "__init__.py", "manifest.json", "rg_msgpack.h", "rg_platform.h", "shapes_cli_codec.h",
        "shapes_cli_messages.h", "rg_ring.h", "rg_state.h", "rg_route.h", "rg_bus.h", "rg_kernel.h",
        "rg_cpu_shim.h", "rg_python.h"}
    again = _ringgen("build", str(module), "-o", str(tmp_path / "gen"))
    assert "up to date" in again.stdout
    assert _ringgen("check", str(module), "-o", str(tmp_path / "gen")).returncode == 0

    module.write_text(module.read_text().replace("k: np.uint64 = 0", "k: np.uint32 = 0"))
    stale = _ringgen("check", str(module), "-o", str(tmp_path / "gen"))
    assert stale.returncode == 1
    assert "shapes_cli_messages.h" in stale.stdout and "ringgen build" in stale.stdout


def test_importing_a_stale_package_names_the_rebuild_command(tmp_path: Path) -> None:
    module = tmp_path / "stale_demo.py"
    module.write_text(SCHEMA.read_text().replace("class Widths", "class Demo"))
    assert _ringgen("build", str(module), "-o", str(tmp_path / "gen")).returncode == 0
    ok = subprocess.run([sys.executable, "-c", "import gen.stale_demo as p; print(p.Demo())"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    module.write_text(module.read_text().replace("a: np.uint8 = 0", "a: np.uint16 = 0"))
    bad = subprocess.run([sys.executable, "-c", "import gen.stale_demo"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert "StaleSchemaError" in bad.stderr
    assert "ringgen build stale_demo.py -o gen" in bad.stderr


def test_inspect_prints_the_layout() -> None:
    out = _ringgen("inspect", str(SCHEMA))
    assert out.returncode == 0, out.stderr
    assert "Widths (widths.Widths): 96 bytes, align 8" in out.stdout
    assert "_pad1" in out.stdout and "uint64_t" in out.stdout


@pytest.mark.parametrize("args", [["build", "nope.py", "-o", "x"], ["inspect", "no.such.module"]])
def test_errors_are_one_line_and_exit_nonzero(args: list[str], tmp_path: Path) -> None:
    out = _ringgen(*args, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("ringgen ") and "error:" in out.stderr
    assert "Traceback" not in out.stderr


ECHO_KERNEL = '''
from dataclasses import dataclass
from ringgen import message, ring_kernel

@message
@dataclass
class Hop:
    n: int = 0

@ring_kernel(kernel_id="hop", input=Hop, output=Hop, cuda="""
__device__ bool hop_handle(const Hop& req, Hop& resp, rg_ctx& ctx) { resp.n = req.n + 1; return true; }
""")
def hop(req: Hop) -> Hop: ...
'''


def test_build_target_reports_each_target_and_a_cuda_failure_keeps_the_cpu_build(
        tmp_path: Path) -> None:
    (tmp_path / "hops.py").write_text(ECHO_KERNEL)
    # A CUDA toolkit whose nvcc fails, as an nvcc that cannot compile a handler does; none on PATH.
    nvcc = tmp_path / "cuda" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text("#!/bin/sh\necho 'hops.cu(3): error: this nvcc fails' >&2\nexit 2\n")
    nvcc.chmod(0o755)
    env = {**os.environ, "CUDA_HOME": str(tmp_path / "cuda"),
           "PATH": "/usr/bin:/bin"}

    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ringgen", "build", "hops.py", "-o", "gen", *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env)

    cpu = build("--target", "cpu")
    assert cpu.returncode == 0, cpu.stderr
    assert cpu.stdout.splitlines()[-2:] == ["cpu: built", "cuda: not built (--target cpu)"]
    both = build()  # auto: nvcc is there, so both; its failure leaves the cpu build standing
    assert both.returncode == 1
    assert "[3/3] nvcc hop (sm_90): FAILED" in both.stdout
    assert both.stdout.splitlines()[-2:] == [
        "cpu: built", "cuda: FAILED (1 kernel(s)): hop: hops.cu(3): error: this nvcc fails"]
    (tmp_path / "cuda" / "bin" / "nvcc").unlink()
    missing = build("--target", "all")
    assert missing.returncode == 1
    assert "--target all needs nvcc, which was not found" in missing.stderr


def test_build_runs_jobs_at_once_and_reports_each(tmp_path: Path) -> None:
    """--jobs 2 compiles the pub-sub example's topic and three subscribers two at a time: every
    compilation is reported once, numbered in the order they finish."""
    env_cache = {**os.environ, "RINGGEN_CACHE_DIR": str(tmp_path / "cache")}  # nothing cached
    built = subprocess.run([sys.executable, "-m", "ringgen", "build", str(ROOT / "examples" / "pubsub.py"),
                            "-o", str(tmp_path / "gen"), "--target", "cpu", "--jobs", "2"],
                           capture_output=True, text=True, env=env_cache)
    assert built.returncode == 0, built.stderr
    lines = [ln for ln in built.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in lines] == ["[1/5", "[2/5", "[3/5", "[4/5", "[5/5"]
    assert sorted(ln.split("] ")[1].split(":")[0] for ln in lines) == [
        "g++  host ring module", "g++  sub1", "g++  sub2", "g++  sub3", "g++  topic_processor"]
    bad = _ringgen("build", str(ROOT / "examples" / "pubsub.py"), "-o", str(tmp_path / "gen"),
                   "--jobs", "0")
    assert bad.returncode == 1 and "--jobs must be at least 1" in bad.stderr
