"""What a generated package's __init__ runs at import: load its sources, make sure they still
match what it was built from, and bind the message classes and kernels into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringgen.runtime.modules import load_module

from ringgen.errors import StaleSchemaError


def bind_package(ns: dict[str, Any]) -> None:
    from ringgen.codegen.reader import read_package  # the schema reader, not the renderer

    base = Path(ns["PATH"]).parent.parent
    modules = [load_module(s, base) for s in ns["SOURCES"]]
    schema = read_package(ns["PACKAGE"], modules, ns["SOURCES"])
    if schema.package.schema_hash != ns["SCHEMA_HASH"]:
        raise StaleSchemaError(
            f"generated package {ns['PACKAGE']!r} ({ns['PATH']}) is stale: its sources "
            f"({', '.join(ns['SOURCES'])}) changed since it was built; rebuild it with "
            f"`{ns['BUILD_COMMAND']}` (run from {base})"
        )
    for name, cls in schema.classes.items():
        ns.setdefault(name, cls)
    ns["MESSAGE_CLASSES"] = dict(schema.classes)
    ns["KERNEL_SPECS"] = dict(schema.kernels)
    for spec in schema.kernels.values():
        ns.setdefault(spec.fn.__name__, spec.fn)
