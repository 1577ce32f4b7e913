"""What `ringgen top` and Prometheus read: a snapshot of a runtime's kernels as plain data, and
the owner-only Unix socket a runtime opened with `monitor=True` serves it on.

The socket lives in a folder of the user's own (0700, checked on every use: a folder another
user made or can write is refused, since whoever controls it could stand in for the runtime),
named after the runtime's process id. A connection gets one JSON snapshot and is closed; a peer
that is not the same user is refused (SO_PEERCRED) although the modes already keep it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import stat
import struct
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringgen.errors import RinggenError

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime

RATE_WINDOW_S = 1.0  # msgs/s is the processed count's rise over about this long


def monitor_dir() -> Path:
    """The user's private folder of runtime sockets, made 0700 if missing and refused if it is
    not the user's own or others can enter it."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime_dir) / "ringgen" if runtime_dir else Path(f"/tmp/ringgen-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700, parents=False)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RinggenError(
            f"{base} is not a private folder of this user (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}): ringgen will not put its monitor socket there. "
            "Remove it, or set XDG_RUNTIME_DIR to a folder of your own")
    return base


def socket_path(pid: int) -> Path:
    return monitor_dir() / f"{pid}.sock"


def running_monitors() -> list[int]:
    """Process ids of this user's runtimes that serve a monitor socket, alive ones only."""
    pids = []
    for path in sorted(monitor_dir().glob("*.sock")):
        with contextlib.suppress(ValueError):
            pid = int(path.stem)
            if Path(f"/proc/{pid}").exists():
                pids.append(pid)
    return pids


class Rates:
    """msgs/s per kernel from the processed counts sampled at each snapshot."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, kernel_id: str, processed: int, now: float) -> float | None:
        samples = self._samples.setdefault(kernel_id, deque())
        samples.append((now, processed))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        t0, p0 = samples[0]
        if now - t0 <= 0:
            return None
        return (processed - p0) / (now - t0)


def snapshot(runtime: RingKernelRuntime, rates: Rates | None = None) -> dict[str, Any]:
    """Every kernel's telemetry, lane depths and dead letters, as JSON-ready data. Call it on
    the runtime's loop thread."""
    now = time.monotonic()
    kernels = []
    for kernel_id in runtime.kernel_ids():
        row = dataclasses.asdict(runtime.telemetry(kernel_id))
        row["lane_depths"] = runtime.channel(kernel_id).lane_depths()
        row["dead_letters"] = runtime.dead_letter_counts.get(kernel_id, 0)
        row["msgs_per_s"] = rates.rate(kernel_id, row["processed"], now) if rates else None
        kernels.append(row)
    return {"pid": os.getpid(), "backend": runtime.backend, "time": time.time(),
            "kernels": kernels}


class MonitorServer:
    """The socket of one runtime, served on its loop."""

    def __init__(self, runtime: RingKernelRuntime) -> None:
        self.runtime = runtime
        self.path = socket_path(os.getpid())
        self._rates = Rates()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # one of a process with our pid that is gone
        old = os.umask(0o177)  # the socket is 0600 from the start, not after a chmod
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _peer_uid(writer) in (None, os.getuid()):
                data = json.dumps(snapshot(self.runtime, self._rates)).encode() + b"\n"
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def read_snapshot(pid: int, timeout: float = 5.0) -> dict[str, Any]:
    """One snapshot from the runtime of process `pid` (the `ringgen top` client)."""
    path = socket_path(pid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as e:
            raise RinggenError(f"no ringgen runtime answers at {path} ({e}); is it running "
                               "with RingKernelRuntime(..., monitor=True)?") from e
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return dict(json.loads(b"".join(chunks)))
