"""Build errors of the translator: every unsupported construct of a module, each with its
file:line:col, what it is and what to write instead."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ringgen.errors import TranslationError


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    construct: str
    instead: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.construct} is not supported in a " \
               f"translated handler; {self.instead}"


class Unsupported(Exception):
    """Raised inside the translator at the first problem of one statement; collected so that
    translation goes on with the next statement."""

    def __init__(self, node: ast.AST, construct: str, instead: str, cascade: bool = False) -> None:
        super().__init__(construct)
        self.node = node
        self.construct = construct
        self.instead = instead
        self.cascade = cascade  # follows from an error already reported: not reported again


class Diagnostics:
    def __init__(self, file: str, line_offset: int) -> None:
        self.file = file
        self.line_offset = line_offset  # the function's first line in its file, less one
        self.found: list[Diagnostic] = []

    def line(self, node: ast.AST) -> int:
        return int(getattr(node, "lineno", 1)) + self.line_offset

    def add(self, problem: Unsupported) -> None:
        if problem.cascade:
            return
        col = int(getattr(problem.node, "col_offset", 0)) + 1
        self.found.append(Diagnostic(self.file, self.line(problem.node), col, problem.construct,
                                     problem.instead))

    def raise_if_any(self, kernel_id: str) -> None:
        if self.found:
            lines = "\n".join(f"  {d}" for d in self.found)
            raise TranslationError(
                f"kernel {kernel_id!r}: {len(self.found)} construct(s) cannot be translated to "
                f"C (or give the handler as cuda=...):\n{lines}", self.found)
