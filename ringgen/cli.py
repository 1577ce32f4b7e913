"""The `ringgen` command: build, check and inspect generated packages; watch a running runtime."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ringgen import top
from ringgen._version import __version__
from ringgen.errors import RinggenError

log = logging.getLogger("ringgen")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ringgen",
        description="Compile @message schemas and @ring_kernel actors into CUDA ring kernels "
                    "and a Python package that runs them.",
    )
    p.add_argument("--version", action="version", version=f"ringgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    sub = p.add_subparsers(dest="command", required=True)

    def modules_and_out(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("modules", nargs="+", metavar="MODULE",
                        help="actor/message module: a .py path or a dotted module name")
        sp.add_argument("-o", "--out", required=True, metavar="DIR",
                        help="folder that receives the package folder DIR/<name>/")
        sp.add_argument("--name", help="package name (default: the first module's name)")

    b = sub.add_parser("build", help="generate (and compile) the package of MODULE...")
    modules_and_out(b)
    b.add_argument("--no-compile", action="store_true", help="only write the sources")
    b.add_argument("--target", choices=("auto", "cpu", "cuda", "all"), default="auto",
                   help="what to compile: cpu (g++, the CPU backend), cuda (nvcc), all; "
                        "auto (default): cpu, and cuda where nvcc is found")
    b.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="compilers to run at once (default 1; each nvcc may take gigabytes)")
    c = sub.add_parser("check", help="exit 1 if the generated package on disk is stale")
    modules_and_out(c)
    i = sub.add_parser("inspect", help="print each message's C layout")
    i.add_argument("modules", nargs="+", metavar="MODULE")
    i.add_argument("--resources", action="store_true",
                   help="also compile each device kernel for sm_90 (nvcc, cached) and print "
                        "ptxas' figures: registers, spills, static shared memory, stack")
    i.add_argument("-o", "--out", metavar="DIR",
                   help="with --resources: where the package is built (default: a folder in "
                        "the compile cache, so that a second run is a cache hit)")
    v = sub.add_parser("verify", help="run each device kernel and its Python function on the same "
                                      "generated messages; report the first difference, shrunk")
    v.add_argument("module", metavar="MODULE", help="actor module: a .py path or a dotted module name")
    v.add_argument("--kernel", metavar="K", help="only the kernel with this id")
    v.add_argument("--examples", type=int, default=100, metavar="N", help="messages per kernel (100)")
    v.add_argument("--seed", type=int, default=0, metavar="S",
                   help="where the messages are drawn from: a run repeats the last one's for the "
                        "same seed, another seed explores others (0)")
    t = sub.add_parser("top", help="live view of a running runtime's kernels (monitor=True)")
    top.add_arguments(t)
    return p


def _build(args: argparse.Namespace) -> int:
    from ringgen.codegen.build import build

    result = build(args.modules, args.out, args.name)
    pkg = result.plan.schema.package
    where = result.plan.package_dir
    if result.skipped:
        print(f"{where}: up to date ({len(pkg.messages)} messages, {len(pkg.kernels)} kernels)")
    else:
        print(f"{where}: wrote {len(result.changed)} file(s): {', '.join(result.changed) or '-'}")
    for h in result.plan.schema.host_only:
        print(f"note: {h.name} is host-only (no C layout): {h.reason}")
    if not args.no_compile:
        from ringgen.codegen.build import compile_package
        from ringgen.progress import compile_progress

        with compile_progress() as progress:
            report = compile_package(result.plan, progress=progress, target=args.target,
                                     jobs=args.jobs)
        print(report.summary())
        if report.failed:
            return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    from ringgen.codegen.build import check

    plan, stale = check(args.modules, args.out, args.name)
    if stale:
        print(f"{plan.package_dir} is stale: {', '.join(stale)}\nrebuild with: {plan.command}")
        return 1
    print(f"{plan.package_dir}: up to date")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ringgen.codegen.layout import describe_layout
    from ringgen.codegen.reader import read_modules, read_package

    loaded, sources = read_modules(args.modules)
    schema = read_package("inspect", loaded, sources)
    for m in schema.package.messages:
        print(f"{m.name} ({m.qualified_name}): {m.layout.size} bytes, align {m.layout.align}, "
              f"type id {m.type_id:#010x}")
        rows = [("member", "C type", "offset", "size"),
                *((n, t, str(o), str(s)) for n, t, o, s in describe_layout(m.layout))]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    for h in schema.host_only:
        print(f"{h.name}: host-only: {h.reason}")
    return _print_resources(args) if args.resources else 0


def _print_resources(args: argparse.Namespace) -> int:
    """ptxas' figures per device kernel; 1 if a kernel's block cannot be resident on sm_90."""
    from ringgen.codegen.build import build, resource_error
    from ringgen.toolchain.cache import cache_dir
    from ringgen.toolchain.resources import kernel_resources

    out = args.out or str(cache_dir() / "inspect")
    p = build(args.modules, out).plan
    failed = 0
    for k in p.schema.package.kernels:
        if k.host_actor:
            continue
        r = kernel_resources(p.package_dir, k.kernel_id)
        shared = f"static shared memory {r.shared_static:,} B"
        print(f"kernel {k.kernel_id} (sm_90, block {k.block}): " + (
            f"ptxas refused it: {shared}" if r.refused else
            f"{r.registers} registers, {shared}, stack {r.stack:,} B, "
            f"spills {r.spill_stores:,} B stored / {r.spill_loads:,} B loaded"))
        if problems := r.problems(k.block):
            print(f"  error: {resource_error(p.schema.package, k, problems)}")
            failed = 1
    return failed


def _verify(args: argparse.Namespace) -> int:
    from ringgen.verify import verify

    verify(args.module, args.kernel, args.examples, progress=lambda line: print(line, flush=True),
           seed=args.seed)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"build": _build, "check": _check, "inspect": _inspect, "top": top.run,
                "verify": _verify}
    try:
        return handlers[args.command](args)
    except (RinggenError, ImportError) as e:
        print(f"ringgen {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ringgen build ... | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")
        return 0
