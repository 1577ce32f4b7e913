"""The ast of a kernel's Python function, with its position in its file."""

from __future__ import annotations

import ast
import inspect
import textwrap

from ringgen.errors import TranslationError
from ringgen.schema.kernels import KernelSpec


def function_ast(spec: KernelSpec) -> tuple[ast.FunctionDef, int]:
    """(the function's ast, the file line its source starts on: its first decorator)."""
    try:
        lines, first = inspect.getsourcelines(spec.fn)
    except (OSError, TypeError) as e:
        raise TranslationError(f"kernel {spec.kernel_id!r}: the source of {spec.fn.__qualname__} "
                               f"cannot be read ({e}); define it in a .py file, or give "
                               "the handler as cuda=...") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise TranslationError(f"kernel {spec.kernel_id!r}: {spec.fn.__qualname__} is not a plain "
                               "def; write the handler as `def f(req): ...`")
    return node, max(first, 1)
