"""`ringgen verify`: a compiled handler that differs from its Python function is caught, shrunk
and reported; every example's kernels agree with their Python functions."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, generated_package

from ringgen.cli import main
from ringgen.codegen.kernels import collect_kernels
from ringgen.schema.modules import load_module
from ringgen.verify import built, device_kernels, verify_package

TRUNCATING = '''\
from __future__ import annotations
from dataclasses import dataclass
import numpy as np
from ringgen import message, ring_kernel


@message
@dataclass
class Div:
    a: np.int32 = np.int32(0)
    b: np.int32 = np.int32(1)


@message
@dataclass
class Quotient:
    q: int = 0


# C's / truncates toward zero where Python's // floors: they differ on negative quotients
DIV_CU = r"""
__device__ bool divider_handle(const Div& req, Quotient& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) resp.q = req.b != 0 ? (int64_t)req.a / req.b : 0;
    return true;
}
"""


@ring_kernel(kernel_id="divider", input=Div, output=Quotient, cuda=DIV_CU)
def divider(req: Div) -> Quotient:
    return Quotient(q=req.a // req.b if req.b != 0 else 0)
'''


@pytest.fixture(scope="module")
def truncating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "truncating.py"
    path.write_text(TRUNCATING)
    return path


def test_a_difference_is_found_shrunk_and_reported(truncating: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(truncating), "--kernel", "divider", "--examples", "200"]) == 1
    text = capsys.readouterr().err
    assert "kernel 'divider'" in text and "request: Div(" in text
    # shrunk to the simplest negative quotient (a = -1 over b = 2, or a mirror of it)
    assert "q: Python -1, kernel 0" in text, text


FORGETFUL = '''\
from __future__ import annotations
from dataclasses import dataclass
from ringgen import message, ring_kernel


@message
@dataclass
class Tick:
    x: int = 0


@dataclass
class Seen:
    n: int = 0


# The state is wrong only for negative x, and never shows in a response: verify compares the
# state itself after each request
TICK_CU = r"""
__device__ void ticker_handle(const Tick& req, Seen& state, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0 && req.x >= 0) state.n += 1;
}
"""


@ring_kernel(kernel_id="ticker", input=Tick, state=Seen, cuda=TICK_CU)
def ticker(req: Tick, state: Seen) -> None:
    state.n += 1
'''


def test_a_state_difference_is_found_and_reported(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "forgetful.py"
    path.write_text(FORGETFUL)
    assert main(["verify", str(path), "--examples", "20"]) == 1
    text = capsys.readouterr().err
    assert "kernel 'ticker'" in text and "request 1 of 1: Tick(" in text, text
    assert "state.n: Python 1, kernel 0" in text, text


EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_agrees_with_its_python(example: str) -> None:
    module = load_module(str(ROOT / "examples" / f"{example}.py"))
    specs = device_kernels(collect_kernels([module]))
    if specs:
        verify_package(generated_package(example), specs, 25, progress=lambda line: None)


RECORDING = '''\
from __future__ import annotations
from dataclasses import dataclass
from ringgen import message, ring_kernel

SEEN: list[int] = []  # what the Python function was given, in order


@message
@dataclass
class Num:
    x: int = 0


ECHO_CU = r"""
__device__ bool echo_handle(const Num& req, Num& resp, rg_ctx& ctx) {
    (void)ctx;
    resp.x = req.x;
    return true;
}
"""


@ring_kernel(kernel_id="echo", input=Num, output=Num, cuda=ECHO_CU)
def echo(req: Num) -> Num:
    SEEN.append(req.x)
    return Num(x=req.x)
'''


def test_a_seed_draws_the_same_messages_and_another_seed_others(tmp_path: Path) -> None:
    path = tmp_path / "recording.py"
    path.write_text(RECORDING)
    with built(str(path)) as (package, kernels):
        spec = kernels["echo"]
        seen = spec.fn.__globals__["SEEN"]
        runs = []
        for seed in (0, 0, 7):
            seen.clear()
            verify_package(package, [spec], 15, progress=lambda line: None, seed=seed)
            runs.append(list(seen))
    assert len(runs[0]) >= 15 and len(set(runs[0])) > 1
    assert runs[0] == runs[1]  # the same seed: the same messages, in the same order
    assert runs[2] != runs[0]
