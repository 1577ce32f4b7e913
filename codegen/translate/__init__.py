"""Handlers written in Python: a @ring_kernel function without cuda= is translated to its C
handler. reader (the function's ast) -> lower (typed IR, tir) -> emit (C with #line)."""

from __future__ import annotations

from ringgen.codegen.ir import MessageIR, StructLayout
from ringgen.codegen.translate.diagnostics import Diagnostics, Unsupported
from ringgen.codegen.translate.emit import Emitter
from ringgen.codegen.translate.lower import Lowerer
from ringgen.codegen.translate.reader import function_ast
from ringgen.codegen.translate.tir import Function
from ringgen.codegen.translate.types import Messages
from ringgen.schema.kernels import KernelSpec


def translate(spec: KernelSpec, messages: dict[str, MessageIR], shown_file: str,
              state: StructLayout | None = None) -> tuple[str, int]:
    """(the C handler, the line of the Python function) of a kernel written in Python (state:
    the layout of its state= struct); a TranslationError lists every construct it cannot
    translate."""
    tree, first_line = function_ast(spec)
    diags = Diagnostics(shown_file, first_line - 1)
    assert spec.input is not None
    func = Function(spec.kernel_id, spec.input.__name__, spec.output.__name__ if spec.output else None,
                    spec.block, shown_file, spec.per,
                    state.c_name if state else None,
                    {m.name: m.ctype for m in state.fields if m.ctype} if state else {},
                    {name: cls.__name__ for name, cls in spec.sends})
    table = Messages(messages)
    try:
        Lowerer(spec.fn, tree, func, table, diags).lower()
    except Unsupported as problem:
        diags.add(problem)
    diags.raise_if_any(spec.kernel_id)
    return Emitter(func, table).emit(), first_line + tree.lineno - 1  # the `def` line
