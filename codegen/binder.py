"""What a generated package's __init__ runs at import: load its sources, make sure they still
match what it was built from, and bind the message classes and kernels into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringgen.errors import StaleSchemaError
from ringgen.schema.modules import load_module


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
    _check_runtime_headers(Path(ns["PATH"]), ns)
    for name, cls in schema.classes.items():
        ns.setdefault(name, cls)
    ns["MESSAGE_CLASSES"] = dict(schema.classes)
    ns["SOURCE_MODULES"] = modules
    ns["KERNEL_SPECS"] = dict(schema.kernels)
    for spec in schema.kernels.values():
        ns.setdefault(spec.fn.__name__, spec.fn)


def _check_runtime_headers(package_dir: Path, ns: dict[str, Any]) -> None:
    """The package's copies of ringgen's C headers must be this ringgen's: the host side of the
    rings is compiled from the installed ones, the kernels from the package's."""
    from ringgen.codegen.render import STATIC_HEADERS, template_text

    for name in STATIC_HEADERS:
        copy = package_dir / name
        if copy.exists() and copy.read_text() != template_text(name):
            raise StaleSchemaError(
                f"generated package {ns['PACKAGE']!r} ({package_dir}) was built by another "
                f"version of ringgen ({name} differs); rebuild it with `{ns['BUILD_COMMAND']}`")
