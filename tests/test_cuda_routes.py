"""The device side of routes (rg_route.h): on a GPU both ends of a route ring are blocks of that
GPU, which push, pop and finish with device-scope acquire/release. No GPU is lent to these
tests: they check what nvcc makes of it (sm_90 PTX); runs on a GPU are owed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import build_package, have_nvcc

from ringgen.toolchain.compile import cccl_include, templates_dir

ROUTE_PROBE = r"""
#include "rg_route.h"
struct Msg { uint8_t bytes[40]; };
extern "C" __global__ void probe(rg_ring* ring, Msg* io, int* ok) {
    ok[0] = rg_route_push(ring, &io[0]);
    ok[1] = rg_route_pop(ring, &io[1]);
}
"""


def _ptx(source: Path, includes: list[Path]) -> str:
    out = source.with_suffix(".ptx")
    cmd = ["nvcc", "-arch=sm_90", "-std=c++17", *(f"-I{i}" for i in includes), "-ptx",
           str(source), "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    return out.read_text()


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_route_rings_use_device_scope_and_no_system_fence(tmp_path: Path) -> None:
    source = tmp_path / "probe.cu"
    source.write_text(ROUTE_PROBE)
    ptx = _ptx(source, [templates_dir(), cccl_include()])
    assert "ld.acquire.gpu" in ptx and "st.release.gpu" in ptx, ptx[-3000:]
    assert ".sys" not in ptx, "a route ring op is fenced at system scope (over the bus)"


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_a_routed_kernel_pops_and_pushes_its_routes_at_device_scope(tmp_path: Path) -> None:
    """A generated kernel keeps system scope for its host rings and uses device scope for its
    routes: both kinds appear in its sm_90 PTX."""
    pkg: Any = build_package("schemas.routed", tmp_path / "gen")
    package = pkg.package.path
    ptx = _ptx(package / "a.cu", [package, cccl_include()])
    assert "ld.acquire.gpu" in ptx and "st.release.gpu" in ptx  # the routes
    assert "ld.acquire.sys" in ptx and "st.release.sys" in ptx  # the host rings

