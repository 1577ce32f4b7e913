"""The public face: what users import is `ringgen` itself, and it is complete.

Examples and the README's snippets are what users copy, so they may import only names that
`ringgen` exports, or `ringgen.cluster` (the Ray extra, a public module of its own so that
`import ringgen` never needs Ray); the other subpackages are the implementation and move
between versions.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest

import ringgen
import ringgen.cluster
from ringgen import errors

PUBLIC = {"ringgen": ringgen.__all__, "ringgen.cluster": ringgen.cluster.__all__}

ROOT = Path(__file__).resolve().parent.parent


def _ringgen_imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) of every `from ringgen... import name` and `import ringgen...`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ringgen":
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "ringgen"]
    return found


def _readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    # A snippet inside a list item is indented as the item is.
    return [textwrap.dedent(s) for s in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


SOURCES = [(p.name, p.read_text()) for p in sorted((ROOT / "examples").glob("*.py"))] + [
    (f"README.md snippet {i}", s) for i, s in enumerate(_readme_snippets())
]


@pytest.mark.parametrize(("where", "source"), SOURCES, ids=[w for w, _ in SOURCES])
def test_users_import_only_public_names(where: str, source: str) -> None:
    for module, name in _ringgen_imports(ast.parse(source)):
        assert module in PUBLIC, f"{where} imports from {module}; export it from ringgen"
        assert name in PUBLIC[module], f"{where} imports {name}, which {module} does not export"


def test_the_public_face_exports_what_it_lists() -> None:
    for name in ringgen.__all__:
        assert hasattr(ringgen, name), name


def test_every_error_is_ringgens_own_and_exported() -> None:
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, Exception):
            assert issubclass(cls, errors.RinggenError), name
            assert name in ringgen.__all__, f"ringgen does not export {name}"


def test_compile_error_carries_command_and_output() -> None:
    e = ringgen.CompileError("failed", command=["g++", "x.cu"], output="x.cu:1: error")
    assert e.command == ["g++", "x.cu"] and "error" in e.output
