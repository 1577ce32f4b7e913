"""The ast of a kernel's Python function, with its position in its file."""

from __future__ import annotations

import ast
import functools
import inspect
import os
import textwrap

from ringgen.errors import TranslationError
from ringgen.schema.kernels import KernelSpec


def function_ast(spec: KernelSpec) -> tuple[ast.FunctionDef, int]:
    """(the function's ast, the file line its ast's line 1 is). The module's file is parsed
    once for all of its kernels (positions are then the file's own); a function whose file
    cannot be read is found by inspect."""
    fn = spec.fn
    code = getattr(fn, "__code__", None)
    file = inspect.getsourcefile(fn) if code is not None else None
    if file is not None and code is not None:
        try:
            tree = _module_tree(file, os.stat(file).st_mtime_ns)
        except (OSError, SyntaxError, ValueError):
            tree = None
        node = _defined_at(tree, code.co_firstlineno) if tree is not None else None
        if node is not None:
            return node, 1
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise TranslationError(f"kernel {spec.kernel_id!r}: the source of {fn.__qualname__} "
                               f"cannot be read ({e}); define it in a .py file, or give "
                               "the handler as cuda=...") from None
    found = ast.parse(textwrap.dedent("".join(lines))).body[0]
    if not isinstance(found, ast.FunctionDef):
        raise TranslationError(f"kernel {spec.kernel_id!r}: {fn.__qualname__} is not a plain "
                               "def; write the handler as `def f(req): ...`")
    return found, max(first, 1)


@functools.lru_cache(maxsize=32)
def _module_tree(file: str, mtime_ns: int) -> ast.Module:
    """A module's ast (mtime_ns: a changed file is parsed again)."""
    with open(file, encoding="utf-8") as f:
        return ast.parse(f.read(), file)


def _defined_at(tree: ast.Module, first_line: int) -> ast.FunctionDef | None:
    """The def whose first line (its first decorator's) is first_line, as in co_firstlineno."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and \
                min([d.lineno for d in node.decorator_list] + [node.lineno]) == first_line:
            return node
    return None
