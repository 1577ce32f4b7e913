"""The CPU backend: the generated .cu compiled by g++ into a runner process per kernel.

The region lives in a shared-memory file mapped by Python and by the runner, so the host side
is the same _rg_host code that drives a GPU. A crash of the runner (a segfault, abort or
__trap() in a handler) ends that process only; `failure()` then gives its reason.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

from ringgen.errors import ValidationError
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import (
    DEFAULT_LANE_CAPACITY,
    DEFAULT_OUT_CAPACITY,
    KernelDef,
    RingKernel,
)
from ringgen.runtime.shm import shared_memory
from ringgen.toolchain.compile import RUNNER_FLAGS, compile_runner

log = logging.getLogger("ringgen.cpu")

# An idle block polls this long before it sleeps: a request within it is taken at once. It
# costs a core's time only while requests come that often; RINGGEN_CPU_SPIN_US changes it.
DEFAULT_SPIN_US = 200


# The exit status of a race-check runner that ThreadSanitizer stopped at a data race.
RACE_EXIT = 66


def runner_build_from_env() -> str:
    """The runner build the environment asks for: RINGGEN_RACE_CHECK=1, RINGGEN_DEBUG=1,
    RINGGEN_BUS_BASELINE=1 (the data path before batches, for benchmarks/bench_bus.py)."""
    if os.environ.get("RINGGEN_RACE_CHECK", "") not in ("", "0"):
        return "race-check"
    if os.environ.get("RINGGEN_DEBUG", "") not in ("", "0"):
        return "debug"
    if os.environ.get("RINGGEN_BUS_BASELINE", "") not in ("", "0"):
        return "bus-baseline"
    return "release"


_ACCESS = re.compile(r"^\s*(?:Previous )?(?:[Aa]tomic )?(?:[Ww]rite|[Rr]ead) of size \d+")
_FRAME = re.compile(r"^\s*#\d+ ([^( ]+).* (\S+?:\d+)(?::\d+)? \(")  # #0 fn(args) file:line (...


def race_report(stderr: list[str]) -> str:
    """ThreadSanitizer's report as one line: each of the two accesses with the function and
    source line that made it."""
    accesses: list[str] = []
    for i, line in enumerate(stderr):
        if _ACCESS.match(line):
            kind = line.strip().split(" at ")[0]
            frame = next((m for m in map(_FRAME.match, stderr[i + 1:i + 4]) if m), None)
            accesses.append(f"{kind} in {frame.group(1)} at {frame.group(2)}" if frame else kind)
    summary = next((ln.split("SUMMARY: ThreadSanitizer: ", 1)[1] for ln in stderr
                    if "SUMMARY: ThreadSanitizer: " in ln), "data race")
    return (f"race check: {summary} -- two threads of a block touched the same memory between "
            f"two barriers ({'; '.join(accesses) or 'see the log'}); order them with "
            "__syncthreads(), let one thread do it, or use an atomic")


class CpuKernel(RingKernel):
    backend_name = "cpu"
    # The runner writes the notify eventfd itself. False: a watcher thread does, as on CUDA
    # (where no kernel can) -- what tests set to run that path of the host side on a CPU.
    kernel_writes_notify = True

    def __init__(self, info: KernelDef, lane_capacity: int = DEFAULT_LANE_CAPACITY,
                 out_capacity: int = DEFAULT_OUT_CAPACITY, build: str | None = None,
                 device: int = 0):
        """`build`: "release", "debug" (-O0 -g, and how to attach gdb in the log) or
        "race-check" (ThreadSanitizer: the first data race between two threads of a block
        fails the kernel, naming both accesses); None: RINGGEN_RACE_CHECK=1 or RINGGEN_DEBUG=1
        from the environment, else release."""
        super().__init__(info, lane_capacity, out_capacity, device)
        self.build = build or runner_build_from_env()
        if self.build not in RUNNER_FLAGS:
            raise ValidationError(f"build must be one of {', '.join(RUNNER_FLAGS)}, not {build!r}")
        runner = compile_runner(Path(info.package_dir), info.kernel_id, self.build).path
        env = None
        if self.build == "race-check":  # the first race ends the runner, and the report says it
            env = {**os.environ, "TSAN_OPTIONS": f"halt_on_error=1 exitcode={RACE_EXIT} "
                                                 + os.environ.get("TSAN_OPTIONS", "")}
        fd, self._map = shared_memory(f"ringgen-{info.kernel_id}", self.region_size)
        self._anchor: ctypes.c_char | None = ctypes.c_char.from_buffer(self._map)
        region = self._init_region(ctypes.addressof(self._anchor), secrets.randbits(64))
        region.set_spin(int(float(os.environ.get("RINGGEN_CPU_SPIN_US", DEFAULT_SPIN_US)) * 1000))
        self._stderr: collections.deque[str] = collections.deque(maxlen=100)  # a race report
        self._abandoned: str | None = None
        self._connect_notify(self.kernel_writes_notify)
        # The runner inherits the region's descriptor and is told this process's id: it dies
        # with this process, even one killed before the runner asked for its death signal.
        fds = (fd, self.notify_fd) if self.kernel_writes_notify else (fd,)
        try:
            self.proc = subprocess.Popen(
                [str(runner), f"/proc/self/fd/{fd}", str(os.getpid())],
                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
                pass_fds=fds, env=env)
        finally:
            os.close(fd)  # the mapping keeps the memory; the runner has its own descriptor
        threading.Thread(target=self._read_stderr, daemon=True,
                         name=f"ringgen-{info.kernel_id}-stderr").start()
        self._wait_started()
        if self.build == "debug":
            log.warning("kernel %s runs a debug build (-O0 -g) as process %d; attach a debugger "
                        "with:  gdb -p %d %s  (then e.g. `break %s_handle`, `continue`; on the "
                        "fibers, `bt` shows the thread that runs)", self.kernel_id, self.proc.pid,
                        self.proc.pid, runner, self.kernel_id)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self._stderr.append(line)
            log.warning("kernel %s: %s", self.kernel_id, line)
        self.proc.wait()
        if self.on_exit is not None:
            self.on_exit()

    def _start_timed_out(self) -> None:
        self.proc.kill()

    def abandon(self, reason: str) -> None:
        """A hung runner, or one that broke its region, is killed (and reaped, so that
        exited() and untaken() see it gone)."""
        self._abandoned = reason
        self.proc.kill()
        self.proc.wait()

    def failure(self) -> str | None:
        if self._abandoned is not None:
            return self._abandoned
        rc = self.proc.poll()
        if rc is None or rc == 0:  # the runner exits 0 only once terminated
            return None
        time.sleep(0.01)  # let the stderr reader catch the runner's last words
        # The runner's own reports of its death: a failed assert's text, then the fault's block
        # and thread.
        reports = [line.removeprefix("ringgen: ") for line in self._stderr
                   if line.startswith("ringgen:")]
        if rc < 0:
            name = signal.Signals(-rc).name
            detail = "; ".join(reports) if reports else f"killed by {name}"
            return f"{detail} (the runner process died of {name})"
        if rc == RACE_EXIT and self.build == "race-check":
            return race_report(list(self._stderr))
        tail = "; ".join(list(self._stderr)[-3:])
        return f"the runner process exited with status {rc}" + (f": {tail}" if tail else "")

    def stop(self, timeout: float = 1.0) -> None:
        """Acknowledged terminate, the process waited for (killed after `timeout`); the region
        stays mapped, so what the kernel answered can still be popped."""
        if self.proc.poll() is not None:
            return
        acked = self.command(rings.CMD_TERMINATE, timeout)
        try:
            self.proc.wait(timeout=timeout if acked else 0.1)
        except subprocess.TimeoutExpired:
            log.warning("kernel %s did not exit within %.1f s of terminate; killed",
                        self.kernel_id, timeout)
            self.proc.kill()
            self.proc.wait()

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release_region()
        self._anchor = None
        self._map.close()
