"""`ringgen top`: a live view of a running runtime's kernels (one started with monitor=True or
RINGGEN_MONITOR=1), refreshed like top; `--once --json` prints one snapshot for scripts."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ringgen.errors import RinggenError
from ringgen.runtime.monitor import read_snapshot, running_monitors

LANE_NAMES = ("low", "below", "normal", "above", "high")
COLUMNS = ("kernel", "backend", "state", "lanes low..high", "backlog+lanes", "msgs/s", "p50 us",
           "p99 us", "errors", "dropped", "dead letters", "restarts")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pid", type=int, help="the runtime's process (default: the only one)")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh period")


def _pick_pid(pid: int | None) -> int:
    if pid is not None:
        return pid
    pids = running_monitors()
    if not pids:
        raise RinggenError("no running ringgen runtime serves a monitor: start it with "
                           "RingKernelRuntime(..., monitor=True) or RINGGEN_MONITOR=1")
    if len(pids) > 1:
        raise RinggenError(f"several runtimes serve a monitor (pids {pids}); choose with --pid")
    return pids[0]


def _figure(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows(snap: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table's rows, one per kernel, as the columns say."""
    out: list[tuple[str, ...]] = []
    for k in snap["kernels"]:
        lanes = "/".join(str(n) for n in k["lane_depths"]) or "-"
        out.append((k["kernel_id"], k["backend"], k["state"], lanes, str(k["queue_depth"]),
                    _figure(k["msgs_per_s"]), _figure(k["latency_p50_us"], 1),
                    _figure(k["latency_p99_us"], 1), str(k["errors"]), str(k["dropped"]),
                    str(k["dead_letters"]), str(k["restarts"])))
    return out


def _plain(snap: dict[str, Any]) -> str:
    table = [COLUMNS, *rows(snap)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table)


def _live(pid: int, interval: float) -> None:
    try:
        from rich.live import Live
        from rich.table import Table
    except ImportError as e:
        raise RinggenError("the live view needs rich: pip install 'ringgen[top]' "
                           "(or use --once)") from e

    def render(snap: dict[str, Any]) -> Table:
        table = Table(title=f"ringgen pid {pid} ({snap['backend']}), lanes "
                            f"{'/'.join(LANE_NAMES)}")
        for c in COLUMNS:
            table.add_column(c, justify="left" if c in ("kernel", "backend", "state") else "right")
        for r in rows(snap):
            table.add_row(*r)
        return table

    with Live(render(read_snapshot(pid)), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(read_snapshot(pid)), refresh=True)


def run(args: argparse.Namespace) -> int:
    pid = _pick_pid(args.pid)
    if args.once:
        snap = read_snapshot(pid)
        print(json.dumps(snap, indent=2) if args.json else _plain(snap))
        return 0
    try:
        _live(pid, args.interval)
    except KeyboardInterrupt:
        pass
    return 0
