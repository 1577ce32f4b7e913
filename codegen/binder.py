"""What a generated package's __init__ runs at import: load its sources, make sure they still
match what it was built from, define the message classes and kernel functions in it, and make
its `Package` (ringgen.schema.package), what RingKernelRuntime takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ringgen.codegen.dtypes import dtype_spec
from ringgen.codegen.reader import read_package
from ringgen.codegen.render import STATIC_HEADERS, template_text
from ringgen.codegen.runs import message_runs, slot_lead
from ringgen.errors import StaleSchemaError
from ringgen.schema.modules import load_module
from ringgen.schema.package import KernelDef, Package


def bind_package(ns: dict[str, Any], *, name: str, schema_hash: str, build_command: str,
                 sources: Sequence[str], type_ids: Mapping[str, int],
                 dtypes: Mapping[str, np.dtype], host_only: Mapping[str, str]) -> Package:
    """`sources`: dotted module names, or paths relative to the folder that holds the
    package's parent folder (where `build_command` runs)."""
    path = Path(ns["__file__"]).resolve().parent
    base = path.parent.parent
    modules = [load_module(s, base) for s in sources]
    schema = read_package(name, modules, sources)
    if schema.package.schema_hash != schema_hash:
        raise StaleSchemaError(
            f"generated package {name!r} ({path}) is stale: its sources ({', '.join(sources)}) "
            f"changed since it was built; rebuild it with `{build_command}` (run from {base})")
    _check_runtime_headers(path, name, build_command)
    for class_name, cls in {**schema.enums, **schema.classes}.items():
        ns.setdefault(class_name, cls)
    for class_name in dtypes:
        schema.classes[class_name]._rg_codec().check_c_ranges()
    kernels = {}
    structs = {s.c_name: s for s in schema.package.structs}
    leads = {m.name: slot_lead(message_runs(m, structs)) for m in schema.package.messages}

    def lead_of(cls: type | None, device: bool) -> int:
        return leads.get(cls.__name__, 0) if device and cls is not None else 0

    for kernel_id, spec in schema.kernels.items():
        ns.setdefault(spec.fn.__name__, spec.fn)
        if spec.state is not None:
            ns.setdefault(spec.state.__name__, spec.state)
        device = not spec.host_actor

        def struct_of(cls: type | None, device: bool = device) -> np.dtype | None:
            return dtypes[cls.__name__] if device and cls is not None else None

        state = (np.dtype(dtype_spec(schema.package, structs[spec.state.__name__]))  # type: ignore[call-overload]
                 if device and spec.state is not None else None)
        kernels[kernel_id] = KernelDef(spec, struct_of(spec.input), struct_of(spec.output),
                                       path / f"{kernel_id}.cu" if device else None, path, state,
                                       lead_of(spec.input, device), lead_of(spec.output, device))
    package = Package(name, path, MappingProxyType(dict(schema.classes)),
                      MappingProxyType(dict(dtypes)), MappingProxyType(dict(type_ids)),
                      MappingProxyType(dict(host_only)), MappingProxyType(kernels), tuple(modules))
    ns.setdefault("new_array", package.new_array)
    return package


def _check_runtime_headers(package_dir: Path, name: str, build_command: str) -> None:
    """The package's copies of ringgen's C headers must be this ringgen's: the host side of the
    rings is compiled from the installed ones, the kernels from the package's."""
    for header in STATIC_HEADERS:
        copy = package_dir / header
        if copy.exists() and copy.read_text() != template_text(header):
            raise StaleSchemaError(
                f"generated package {name!r} ({package_dir}) was built by another version of "
                f"ringgen ({header} differs); rebuild it with `{build_command}`")
