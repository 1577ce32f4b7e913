"""`ringgen build` / `check`: modules -> IR -> rendered files -> the package folder."""

from __future__ import annotations

import functools
import hashlib
import keyword
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ringgen._version import __version__
from ringgen.codegen import render
from ringgen.codegen.reader import SchemaSet, read_modules, read_package
from ringgen.codegen.writer import (
    MANIFEST,
    is_current,
    manifest_text,
    sha256_text,
    stale_files,
    write_package,
)
from ringgen.errors import ValidationError
from ringgen.schema.modules import is_path


@dataclass
class Plan:
    """Everything a build would write, computed without touching the disk."""

    schema: SchemaSet
    package_dir: Path
    command: str
    input_hash: str

    def files(self) -> dict[str, str]:
        pkg = self.schema.package
        files = render.render_package(pkg, self.command, self.schema.host_only)
        manifest = {
            "package": pkg.name,
            "schema_hash": pkg.schema_hash,
            "input_hash": self.input_hash,
            "build_command": self.command,
            "sources": list(pkg.sources),
            "files": {n: sha256_text(t) for n, t in sorted(files.items())},
            "messages": {m.name: {"qualified_name": m.qualified_name, "type_id": m.type_id,
                                  "size": m.layout.size, "align": m.layout.align}
                         for m in pkg.messages},
            "host_only": {h.name: h.reason for h in self.schema.host_only},
            "kernels": {k.kernel_id: {"input": k.input, "output": k.output, "block": k.block,
                                      "grid": k.grid, "queue_size": k.queue_size,
                                      "host_actor": k.host_actor}
                        for k in pkg.kernels},
        }
        files[MANIFEST] = manifest_text(manifest)
        return files


def _templates_hash() -> str:
    """Every template and header that goes into a package: a ringgen that renders differently
    rebuilds. (The CPU runner's and the host module's sources are not in the package: the
    compile cache keys on them.)"""
    h = hashlib.sha256()
    for path in sorted(resources.files("ringgen.templates").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".j2") or path.name in render.STATIC_HEADERS:
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def plan(modules: Sequence[str], out_dir: str | Path, name: str | None = None) -> Plan:
    """Read the modules and lay out their messages; `out_dir` is the folder that receives the
    package folder `<name>/` (the stem of the first module unless given)."""
    out = Path(out_dir)
    base = out.resolve().parent  # sources are recorded relative to the folder that holds `out`
    sources = [_relative(m, base) if is_path(m) else m for m in modules]
    pkg_name = name or (Path(modules[0]).stem if is_path(modules[0]) else modules[0].split(".")[-1])
    if not pkg_name.isidentifier() or keyword.iskeyword(pkg_name):
        raise ValidationError(
            f"package name {pkg_name!r} is not a Python identifier: the package is imported by "
            f"that name and its C headers are named after it; pass --name with one "
            f"(letters, digits, _)")
    loaded, _ = read_modules(modules)
    # Message and handler files relative to `base`, as the sources: no absolute paths, so the
    # package built in another checkout is the same package.
    schema = read_package(pkg_name, loaded, sources, base)
    # Quoted as a shell would need it: the command is printed for a person to run again.
    command = shlex.join(["ringgen", "build", *sources, "-o", out.resolve().name,
                          *(["--name", name] if name else [])])
    input_hash = hashlib.sha256(
        f"{schema.package.content_hash}|{__version__}|{_templates_hash()}|{command}|"
        f"{sorted((h.name, h.reason) for h in schema.host_only)}".encode()
    ).hexdigest()[:16]
    return Plan(schema, out / pkg_name, command, input_hash)


def _relative(path: str, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()


@dataclass
class BuildResult:
    plan: Plan
    changed: list[str]
    skipped: bool  # nothing to do: the package on disk was built from the same inputs


def build(modules: Sequence[str], out_dir: str | Path, name: str | None = None) -> BuildResult:
    p = plan(modules, out_dir, name)
    if is_current(p.package_dir, p.input_hash):
        return BuildResult(p, [], True)
    return BuildResult(p, write_package(p.package_dir, p.files()), False)


def check(modules: Sequence[str], out_dir: str | Path, name: str | None = None) -> tuple[Plan, list[str]]:
    p = plan(modules, out_dir, name)
    return p, stale_files(p.package_dir, p.files())


@dataclass(frozen=True)
class Compiled:
    what: str
    path: Path
    cached: bool
    seconds: float


def compile_package(p: Plan, progress: Callable[[str], None] | None = None) -> list[Compiled]:
    """Compile every device kernel of a built package: g++ (the CPU backend's runner) always,
    nvcc (a cubin for sm_90) where nvcc exists. Cached: an unchanged kernel costs nothing."""
    from ringgen.toolchain import compile as cc

    jobs: list[tuple[str, Callable[[], cc.Artifact]]] = []
    for k in p.schema.package.kernels:
        if k.host_actor:
            continue
        jobs.append((f"g++  {k.kernel_id}", functools.partial(cc.compile_runner, p.package_dir,
                                                              k.kernel_id)))
        if cc.nvcc() is not None:
            jobs.append((f"nvcc {k.kernel_id} (sm_90)",
                         functools.partial(cc.compile_cubin, p.package_dir, k.kernel_id)))
    if not jobs:
        return []
    jobs.insert(0, ("g++  host ring module", cc.compile_host_module))
    done = []
    for i, (what, job) in enumerate(jobs, 1):
        start = time.monotonic()
        artifact = job()
        seconds = time.monotonic() - start
        done.append(Compiled(what, artifact.path, artifact.cached, seconds))
        if progress is not None and len(jobs) > 1:
            progress(f"[{i}/{len(jobs)}] {what}: {'cached' if artifact.cached else f'{seconds:.1f} s'}")
    return done
