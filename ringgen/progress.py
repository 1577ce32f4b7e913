"""How `ringgen build` shows its compilations: a rich progress bar on a terminal (where rich is
installed), one plain line per finished compilation otherwise (logs, CI, a pipe)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[int, int, str], None]


def _plain(done: int, total: int, line: str) -> None:
    print(f"[{done}/{total}] {line}", flush=True)


@contextmanager
def compile_progress() -> Iterator[Progress]:
    """A progress(done, total, line) callback for compile_package, live while in the block."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar
    except ImportError:
        bar_type: Any = None
    else:
        bar_type = Bar
    if bar_type is None or not sys.stdout.isatty():
        yield _plain
        return
    with bar_type(TextColumn("compiling"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"), transient=True) as bar:
        task = bar.add_task("", total=None)

        def show(done: int, total: int, line: str) -> None:
            if "FAILED" in line:
                bar.console.print(line)  # an error stays on screen; the bar moves on
            bar.update(task, completed=done, total=total, description=line.splitlines()[0])

        yield show
