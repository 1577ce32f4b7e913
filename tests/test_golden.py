"""Golden trees: the generated output of the test schemas and of examples/ is checked in, and
any difference fails with a diff and the command that refreshes it."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from conftest import ROOT

from ringgen.codegen.build import plan
from ringgen.codegen.writer import stale_files, write_package

GOLDEN = ROOT / "tests" / "golden"
SCHEMA_CASES = {"everything": "schemas.everything", "widths": "schemas.widths",
                "seed_messages": "schemas.seed_messages", "kernels": "schemas.kernels",
                "translated": "schemas.translated"}
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


def _compare(module: str, out_dir: Path, update: bool, refresh: str) -> None:
    p = plan([module], out_dir)
    files = p.files()
    if update:
        write_package(p.package_dir, files)
        return
    stale = stale_files(p.package_dir, files)
    diffs = []
    for name in stale:
        path = p.package_dir / name
        old = path.read_text().splitlines(keepends=True) if path.exists() else []
        new = files.get(name, "").splitlines(keepends=True)
        diffs.append("".join(difflib.unified_diff(old, new, f"{path} (checked in)",
                                                  f"{path} (generated now)")))
    assert not stale, ("\n".join(diffs)[:20000] +
                       f"\n{len(stale)} generated file(s) differ: {', '.join(stale)}.\n"
                       f"If the change is intended, refresh them with: {refresh}")


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_golden_schema(case: str, update_golden: bool) -> None:
    _compare(SCHEMA_CASES[case], GOLDEN / case, update_golden,
             "pytest tests/test_golden.py --update-golden   (or: make golden)")


@pytest.mark.parametrize("example", EXAMPLES)
def test_generated_is_current(example: str, update_golden: bool) -> None:
    _compare(str(ROOT / "examples" / example), ROOT / "generated", update_golden,
             f"ringgen build examples/{example} -o generated   (or: make golden)")


def test_build_is_deterministic_across_working_directories(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    first = plan(["schemas.everything"], tmp_path / "a" / "out").files()
    monkeypatch.chdir(tmp_path)
    second = plan(["schemas.everything"], Path("b") / "out").files()
    assert first == second
    assert not any(str(tmp_path) in text or "/work/" in text for text in first.values())
