"""Jinja2 rendering: PackageIR -> the text of every generated file. Pure: writes nothing."""

from __future__ import annotations

import pprint
from importlib import resources
from typing import Any

import jinja2

from ringgen.codegen import escape
from ringgen.codegen.dtypes import dtype_spec, max_packed_size
from ringgen.codegen.ir import PackageIR
from ringgen.codegen.runs import message_runs
from ringgen.schema import header

# Static headers copied verbatim into every generated package, so that it compiles on its own.
STATIC_HEADERS = ("rg_platform.h", "rg_msgpack.h", "rg_ring.h", "rg_state.h", "rg_route.h",
                  "rg_bus.h", "rg_kernel.h", "rg_cpu_shim.h", "rg_python.h")

HEADER_COMMENTS = {m.name: m.comment for m in header.MEMBERS}


def _pyrepr(value: Any) -> str:
    """A deterministic Python literal, wrapped to a readable width when it is small (pprint
    takes quadratic time on deeply nested values, such as the dtype of a nested message)."""
    text = repr(value)
    return text if len(text) <= 96 or len(text) > 4000 else pprint.pformat(
        value, width=96, compact=True, sort_dicts=False)


def template_text(name: str) -> str:
    return resources.files("ringgen.templates").joinpath(name).read_text(encoding="utf-8")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(template_text),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = _pyrepr
    # Names and paths from outside ringgen go through these (codegen/escape.py).
    env.filters["comment"] = escape.comment
    env.filters["py_docstring"] = escape.py_docstring
    env.filters["c_string"] = escape.c_string
    return env


def render_package(pkg: PackageIR, command: str, host_only: list[Any]) -> dict[str, str]:
    """File name -> text for everything in the package folder except manifest.json."""
    env = environment()
    structs = {s.c_name: s for s in pkg.structs}  # the containers, by C name (message_runs)
    common = {
        "pkg": pkg,
        "command": command,
        "sources": ", ".join(pkg.sources),
        "host_only": host_only,
        "message_names": {m.name for m in pkg.messages},
        "header_comments": HEADER_COMMENTS,
        "flag_has_correlation": header.FLAG_HAS_CORRELATION,
        "flag_redelivered": header.FLAG_REDELIVERED,
        "flag_conversation": header.FLAG_CONVERSATION,
        "dtypes": {m.name: dtype_spec(pkg, m.layout) for m in pkg.messages},
        "max_packed": {m.name: max_packed_size(pkg, m) for m in pkg.messages},
        "runs": {m.name: message_runs(m, structs) for m in pkg.messages},
    }
    files = {
        "__init__.py": env.get_template("init.py.j2").render(common),
        f"{pkg.name}_messages.h": env.get_template("messages.h.j2").render(common),
        f"{pkg.name}_codec.h": env.get_template("codec.h.j2").render(common),
    }
    kernel_template = env.get_template("kernel.cu.j2")
    for k in pkg.kernels:
        if not k.host_actor:
            files[f"{k.kernel_id}.cu"] = _number_lines(kernel_template.render(common, k=k))
    for name in STATIC_HEADERS:
        files[name] = template_text(name)
    return files


def _number_lines(text: str) -> str:
    """Fill in `#line @NEXT_LINE@`: the generated file's own line after the user's handler, so
    that compiler messages point at the handler's source lines and then back at the .cu."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "@NEXT_LINE@" in line:
            lines[i] = line.replace("@NEXT_LINE@", str(i + 2))
    return "\n".join(lines)
