"""`ringgen build` / `check`: modules -> IR -> rendered files -> the package folder."""

from __future__ import annotations

import functools
import hashlib
import keyword
import os
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ringgen._version import __version__
from ringgen.codegen import render
from ringgen.codegen.ir import KernelIR, PackageIR
from ringgen.codegen.layout import describe_layout
from ringgen.codegen.reader import SchemaSet, read_modules, read_package
from ringgen.codegen.writer import (
    MANIFEST,
    is_current,
    manifest_text,
    sha256_text,
    stale_files,
    write_package,
)
from ringgen.errors import BackendUnavailableError, CompileError, DeviceResourceError, ValidationError
from ringgen.schema.modules import is_path

if TYPE_CHECKING:
    from ringgen.toolchain import compile as cc


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


TARGETS = ("auto", "cpu", "cuda", "all")


@dataclass
class TargetReport:
    """What compile_package did per target ("cpu": g++ runners, "cuda": nvcc cubins)."""

    targets: tuple[str, ...]
    compiled: list[Compiled]
    failed: dict[str, list[str]]  # target -> one line per kernel that failed, with why
    skipped: dict[str, str]  # target -> why it was not attempted

    def summary(self) -> str:
        lines = []
        for t in ("cpu", "cuda"):
            if t in self.failed:
                lines.append(f"{t}: FAILED ({len(self.failed[t])} kernel(s)): "
                             + "; ".join(self.failed[t]))
            elif t in self.targets:
                lines.append(f"{t}: built")
            elif t in self.skipped:
                lines.append(f"{t}: not built ({self.skipped[t]})")
        return "\n".join(lines)


def _checked_cubin(p: Plan, k: KernelIR) -> cc.Artifact:
    """The kernel's cubin, once ptxas' figures show that its block can be resident on sm_90."""
    from ringgen.toolchain import compile as cc
    from ringgen.toolchain.resources import kernel_resources

    figures = kernel_resources(p.package_dir, k.kernel_id)
    problems = figures.problems(k.block)
    if problems:
        message = resource_error(p.schema.package, k, problems)
        raise DeviceResourceError(message, output=message)
    return cc.compile_cubin(p.package_dir, k.kernel_id)  # a cache hit: kernel_resources made it


def resource_error(pkg: PackageIR, k: KernelIR, problems: list[str]) -> str:
    """The build error for a block that cannot be resident: the limits it breaks, and the
    messages the kernel loop holds (double-buffered) in shared memory, with the fix."""
    names = dict.fromkeys([k.input] + ([k.output] if k.output else []))
    msgs = sorted((pkg.message(n) for n in names), key=lambda m: -m.layout.size)
    member, ctype, _, size = max(describe_layout(msgs[0].layout), key=lambda r: r[3])
    return (f"kernel {k.kernel_id!r} cannot run on sm_90: {'; '.join(problems)}. The kernel loop "
            "holds its messages double-buffered in shared memory: "
            + ", ".join(f"{m.name} {m.layout.size:,} bytes" for m in msgs)
            + f"; {msgs[0].name}.{member} ({ctype}) is {size:,} bytes. Fix: a smaller MaxLen on "
            f"{msgs[0].name}.{member}, a BufferRef for the bulk data (ctx.buffer maps it), or a "
            "smaller batch or block")


def compile_package(p: Plan, progress: Callable[[int, int, str], None] | None = None,
                    target: str = "auto", jobs: int = 1) -> TargetReport:
    """Compile every device kernel of a built package for `target`: "cpu" (g++, the CPU
    backend's runners), "cuda" (nvcc, a cubin for sm_90), "all", or "auto": cpu, and cuda
    where nvcc exists. Each kernel and target on its own: a failure of one (an nvcc error,
    say) is reported in the TargetReport and does not stop the others. Cached: an unchanged
    kernel costs nothing. `jobs` compilers run at once (each is a process of its own; nvcc
    may take gigabytes); `progress(done, total, line)` is called as each one finishes."""
    from ringgen.toolchain import compile as cc

    if target not in TARGETS:
        raise ValidationError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    have_nvcc = cc.nvcc() is not None
    if target in ("cuda", "all") and not have_nvcc:
        raise BackendUnavailableError(
            f"--target {target} needs nvcc, which was not found; install the CUDA toolkit, set "
            "CUDA_HOME, or build --target cpu")
    targets = ("cpu", "cuda") if target == "all" or (target == "auto" and have_nvcc) else (
        (target,) if target in ("cpu", "cuda") else ("cpu",))
    skipped = {} if "cuda" in targets else {"cuda": "nvcc not found" if not have_nvcc
                                             else "--target cpu"}
    if "cpu" not in targets:
        skipped["cpu"] = "--target cuda"
    jobs_to_run: list[tuple[str, str, Callable[[], cc.Artifact]]] = []
    for k in p.schema.package.kernels:
        if k.host_actor:
            continue
        if "cpu" in targets:
            jobs_to_run.append(("cpu", f"g++  {k.kernel_id}",
                         functools.partial(cc.compile_runner, p.package_dir, k.kernel_id)))
        if "cuda" in targets:
            jobs_to_run.append(("cuda", f"nvcc {k.kernel_id} (sm_90)",
                         functools.partial(_checked_cubin, p, k)))
    report = TargetReport(targets, [], {}, skipped)
    if not jobs_to_run:
        return report
    if "cpu" in targets:
        jobs_to_run.insert(0, ("cpu", "g++  host ring module", cc.compile_host_module))
    if jobs < 1:
        raise ValidationError(f"--jobs must be at least 1, not {jobs}")

    def run(job: Callable[[], cc.Artifact]) -> tuple[cc.Artifact | CompileError, float]:
        start = time.monotonic()
        try:
            return job(), time.monotonic() - start
        except CompileError as e:
            return e, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ringgen-compile") as pool:
        running = {pool.submit(run, job): (t, what) for t, what, job in jobs_to_run}
        for done, future in enumerate(as_completed(running), 1):
            t, what = running[future]
            artifact, seconds = future.result()
            if isinstance(artifact, CompileError):
                lines = artifact.output.splitlines()
                first = next((ln for ln in lines if "error" in ln), str(artifact).splitlines()[0])
                report.failed.setdefault(t, []).append(f"{what.split()[1]}: {first.strip()}")
                line = f"{what}: FAILED\n{artifact}"
            else:
                report.compiled.append(Compiled(what, artifact.path, artifact.cached, seconds))
                line = f"{what}: {'cached' if artifact.cached else f'{seconds:.1f} s'}"
            if progress is not None:
                progress(done, len(jobs_to_run), line)
    return report
