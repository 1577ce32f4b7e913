"""The low-level kernel API both backends share: a launched ring kernel's lanes, output rings,
lifecycle commands and counters, over a region laid out by rg_ring.h.

Everything here works on the region through librg_host; a backend only decides where the region
lives (shared memory, mapped pinned memory), how the kernel is started, and how it dies.
"""

from __future__ import annotations

import ctypes
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ringgen.errors import KernelFaultError, KernelStateError
from ringgen.runtime.backends import native

DEFAULT_LANE_CAPACITY = 64
DEFAULT_OUT_CAPACITY = 1024


@dataclass(frozen=True)
class KernelInfo:
    """What a generated package says about one device kernel."""

    kernel_id: str
    package: ModuleType
    input: type
    output: type | None
    in_dtype: np.dtype
    out_dtype: np.dtype | None
    block: int
    grid: int
    queue_size: int
    source: Any  # Path of the .cu

    @property
    def package_dir(self) -> Any:
        return self.package.PATH


def kernel_info(package: ModuleType, kernel_id: str) -> KernelInfo:
    try:
        k = package.KERNELS[kernel_id]
    except KeyError:
        raise KernelStateError(
            f"package {package.PACKAGE!r} has no kernel {kernel_id!r}; it has "
            f"{', '.join(package.KERNELS) or 'none'}") from None
    if k["host_actor"]:
        raise KernelStateError(f"{kernel_id!r} is a host actor, not a device kernel")
    classes = package.MESSAGE_CLASSES
    out = k["output"]
    return KernelInfo(kernel_id, package, classes[k["input"]], classes[out] if out else None,
                      package.DTYPES[k["input"]], package.DTYPES[out] if out else None,
                      k["block"], k["grid"], k["queue_size"], k["source"])


@dataclass(frozen=True)
class BlockStatus:
    state: int
    processed: int
    emitted: int
    errors: int
    heartbeat: int


class RingKernel(ABC):
    """A launched ring kernel. Thread-safe as the rings are: one pushing thread per lane and
    one popping thread at a time."""

    closed: bool
    backend_name = "?"
    notify_fd: int | None = None  # an eventfd that turns readable on responses while armed
    on_exit: Callable[[], None] | None = None  # called (from any thread) when the kernel ends
    poll_ns = 20_000_000  # longest sleep inside one native pop: how soon a death is noticed
    push_nap_ns = 50_000  # how long a push into a full lane naps before it looks again

    def __init__(self, info: KernelInfo, lane_capacity: int = DEFAULT_LANE_CAPACITY,
                 out_capacity: int = DEFAULT_OUT_CAPACITY):
        self.info = info
        self.kernel_id = info.kernel_id
        self.grid = info.grid
        self.lane_capacity = lane_capacity
        self.out_capacity = out_capacity
        self.lib = native.host_library()
        out_slot = info.out_dtype.itemsize if info.out_dtype is not None else 8
        self.region_size = int(self.lib.rg_host_region_size(
            info.grid, info.block, lane_capacity, out_capacity, info.in_dtype.itemsize, out_slot))
        self.region_ptr = 0
        self._next_block = ctypes.c_uint32(0)
        self._next_block_ref = ctypes.byref(self._next_block)
        self._pop_address = 0
        self._status = (ctypes.c_uint64 * (5 * info.grid))()
        self._pop_buffer: np.ndarray | None = None
        self.closed = False

    def _init_region(self, address: int, seed: int) -> None:
        info = self.info
        out_slot = info.out_dtype.itemsize if info.out_dtype is not None else 8
        self.lib.rg_host_region_init(address, info.grid, info.block, self.lane_capacity,
                                     self.out_capacity, info.in_dtype.itemsize, out_slot, seed)
        self.region_ptr = address

    # -- rings ----------------------------------------------------------------------------

    def push(self, block: int, lane: int, structs: np.ndarray | bytes) -> int:
        """Push as many of `structs` as fit (a contiguous array of the input dtype, or the
        bytes of such structs: one message packs to bytes without numpy); returns the count."""
        if isinstance(structs, bytes):
            count, rest = divmod(len(structs), self.info.in_dtype.itemsize)
            if rest:
                raise TypeError("push takes whole structs")
            return int(self.lib.rg_host_push(self.region_ptr, block, lane, structs, count))
        self._check_structs(structs)
        return int(self.lib.rg_host_push(self.region_ptr, block, lane, structs.ctypes.data,
                                         len(structs)))

    def push_wait(self, block: int, lane: int, structs: np.ndarray, timeout: float) -> int:
        """Push all of `structs`, sleeping (without the GIL) while the lane is full, for at most
        `timeout` seconds; returns how many went in."""
        self._check_structs(structs)
        done, deadline = 0, time.monotonic() + timeout
        while done < len(structs):
            left = deadline - time.monotonic()
            step = int(min(max(left, 0.0), self.poll_ns / 1e9) * 1e9)
            done += int(self.lib.rg_host_push_wait(
                self.region_ptr, block, lane, structs.ctypes.data + done * structs.itemsize,
                len(structs) - done, step, self.push_nap_ns))
            if left <= 0 or self.failure() is not None:
                break
        return done

    def _check_structs(self, structs: np.ndarray) -> None:
        if structs.dtype != self.info.in_dtype or not structs.flags.c_contiguous:
            raise TypeError(f"push takes a contiguous array of {self.info.input.__name__} structs")

    def lane_size(self, block: int, lane: int) -> int:
        return int(self.lib.rg_host_lane_size(self.region_ptr, block, lane))

    def pop(self, max_count: int, timeout: float = 0.0) -> np.ndarray:
        """Up to max_count responses (the output dtype); waits up to `timeout` s for the first."""
        if self.info.out_dtype is None:
            raise KernelStateError(f"kernel {self.kernel_id!r} has no output (fire-and-forget)")
        out = self._pop_buffer
        if out is None or len(out) < max_count:
            out = self._pop_buffer = np.empty(max_count, dtype=self.info.out_dtype)
            self._pop_address = out.ctypes.data
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            step = int(min(max(left, 0.0), self.poll_ns / 1e9) * 1e9)
            n = self.lib.rg_host_pop(self.region_ptr, self._pop_address, max_count, step,
                                     self._next_block_ref, self.poll_ns)
            if n or left <= 0 or self.failure() is not None:
                return out[:n].copy()  # the buffer is reused: a big allocation per pop is slow

    # -- lifecycle ------------------------------------------------------------------------

    def command(self, command: int, timeout: float) -> bool:
        """Send a command to every block; True once all acknowledged it within `timeout`."""
        seq = self.lib.rg_host_command(self.region_ptr, command)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            step = min(0.05, max(deadline - time.monotonic(), 0.0))
            if self.lib.rg_host_wait_ack(self.region_ptr, seq, int(step * 1e9)):
                return True
            if self.failure() is not None:
                return False
        return bool(self.lib.rg_host_wait_ack(self.region_ptr, seq, 0))

    def activate(self, timeout: float = 1.0) -> None:
        self._expect(self.command(native.CMD_ACTIVATE, timeout), "activate", timeout)

    def deactivate(self, timeout: float = 1.0) -> None:
        self._expect(self.command(native.CMD_DEACTIVATE, timeout), "deactivate", timeout)

    def _expect(self, acked: bool, what: str, timeout: float) -> None:
        if acked:
            return
        reason = self.failure()
        if reason is not None:
            raise KernelFaultError(f"kernel {self.kernel_id!r} failed: {reason}")
        raise KernelStateError(f"kernel {self.kernel_id!r} did not acknowledge {what} within "
                               f"{timeout} s; is a handler stuck in a loop?")

    def set_buffer(self, slot: int, entry: tuple[int, int, int, int, int, bytes]) -> None:
        """Publish a UnifiedBuffer in the kernel's table (an id of 0 frees the slot)."""
        if not self.lib.rg_host_set_buffer(self.region_ptr, slot, *entry):
            raise KernelStateError(f"no buffer slot {slot}: at most 256 buffers are registered")

    def arm(self, armed: bool) -> None:
        """Ask (or stop asking) to be notified through `notify_fd` of every response."""
        self.lib.rg_host_arm(self.region_ptr, 1 if armed else -1, -1)

    def status(self) -> list[BlockStatus]:
        self.lib.rg_host_status(self.region_ptr, self._status)
        values = list(self._status)
        return [BlockStatus(values[5 * b] & 0xFF, *values[5 * b + 1:5 * b + 5])
                for b in range(self.grid)]

    start_timeout = 10.0  # seconds for every block to show a heartbeat after the launch

    def _wait_started(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if all(s.heartbeat > 0 for s in self.status()):
                return
            reason = self.failure()
            if reason is not None:
                raise KernelFaultError(f"kernel {self.kernel_id!r} failed to start: {reason}")
            time.sleep(0.001)
        self._start_timed_out()
        raise KernelFaultError(f"kernel {self.kernel_id!r} did not start within "
                               f"{self.start_timeout} s; are other kernels occupying the device?")

    def _start_timed_out(self) -> None:
        """Clean up a launch that never showed a heartbeat (nothing to do by default)."""
        return None

    @abstractmethod
    def failure(self) -> str | None:
        """None while the kernel runs (or ended cleanly); else why it died."""

    @abstractmethod
    def stop(self, timeout: float = 1.0) -> None:
        """Acknowledged terminate within `timeout` seconds (forced after it); the region stays
        readable until release()."""

    @abstractmethod
    def release(self) -> None:
        """Free the region and everything else the launch holds."""

    def terminate(self, timeout: float = 1.0) -> None:
        self.stop(timeout)
        self.release()
