"""The low-level kernel API both backends share: a launched ring kernel's lanes, output rings,
lifecycle commands and counters, over a region laid out by rg_ring.h.

Everything here works on the region through _rg_host's Region; a backend only decides where the
region lives (shared memory, mapped pinned memory), how the kernel is started, and how it dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ringgen.errors import KernelFaultError, KernelStateError
from ringgen.runtime import limits
from ringgen.runtime.backends import rings
from ringgen.runtime.state import StateCodec
from ringgen.schema.package import KernelDef

log = logging.getLogger("ringgen.runtime")

DEFAULT_LANE_CAPACITY = 64
DEFAULT_OUT_CAPACITY = 1024


@dataclass(frozen=True)
class BlockStatus:
    state: int
    processed: int
    emitted: int
    errors: int
    heartbeat: int
    # The bus meter (rg_bus.h), CPU backend only: transactions and bytes read and written.
    bus_reads: int = 0
    bus_read_bytes: int = 0
    bus_writes: int = 0
    bus_write_bytes: int = 0


class RingKernel(ABC):
    """A launched ring kernel. Thread-safe as the rings are: one pushing thread per lane and
    one popping thread at a time."""

    closed: bool
    backend_name = "?"
    notify_fd: int  # an eventfd that turns readable on responses while an event loop is armed
    on_exit: Callable[[], None] | None = None  # called (from any thread) when the kernel ends
    death_check_s = 0.02  # a wait in native code returns this often to see if the kernel died
    poll_ns = 20_000_000  # longest nap of a waiting pop (the CPU backend's kernels ring it awake)
    pop_spin_ns = 0  # how long a waiting pop (or a watcher thread) polls before it naps
    watch_nap_ns = 20_000  # a watcher thread's nap between looks at the rings
    push_nap_ns = 50_000  # how long a push into a full lane naps before it looks again

    def __init__(self, info: KernelDef, lane_capacity: int = DEFAULT_LANE_CAPACITY,
                 out_capacity: int = DEFAULT_OUT_CAPACITY, device: int = 0):
        if info.in_dtype is None:
            raise KernelStateError(f"{info.kernel_id!r} is a host actor, not a device kernel")
        self.info = info
        self.in_dtype: np.dtype = info.in_dtype
        self.kernel_id = info.kernel_id
        self.device = limits.device(device)
        self.grid = limits.threads("grid", info.grid)
        limits.threads("block", info.block)
        self.lane_capacity = limits.ring_capacity("lane_capacity", lane_capacity)
        self.out_capacity = limits.ring_capacity("out_capacity", out_capacity)
        self._out_slot = info.out_dtype.itemsize if info.out_dtype is not None else 8
        self.region_size = rings.region_type().size(
            info.grid, info.block, lane_capacity, out_capacity, self.in_dtype.itemsize,
            self._out_slot, info.in_lead, info.out_lead)
        # A kernel with state= has one state slot per block after the rings (rg_state.h).
        self.state_codec = (StateCodec(info.spec.state, info.state_dtype)
                            if info.state_dtype is not None and info.spec.state is not None
                            else None)
        state_size = self.state_codec.size if self.state_codec is not None else 0
        self._state_offset, _ = rings.region_type().state_area(
            self.region_size, info.grid, state_size)
        # Then the routes in and out of it (rg_route.h: runtime.connect).
        self.links_offset, links_bytes = rings.region_type().links_area(
            self.region_size, info.grid, state_size)
        self.region_size = self.links_offset + links_bytes
        self.region: rings.Region | None = None
        self._region_fault = rings.region_fault()
        self._region_released = rings.region_released()
        self.host_fault: str | None = None  # why the host found the region broken, if it did
        self.notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._state_lock = threading.Lock()
        self._needs_watcher = False
        self.closed = False

    def _init_region(self, address: int, seed: int) -> rings.Region:
        """Lay the region out in the backend's memory at `address` (region_size bytes)."""
        info = self.info
        self.region = rings.region_type()(address, info.grid, info.block, self.lane_capacity,
                                           self.out_capacity, self.in_dtype.itemsize,
                                           self._out_slot, seed, info.in_lead, info.out_lead)
        # The state slots and links after the rings start zeroed (pinned memory is not).
        ctypes.memset(address + self._state_offset, 0, self.region_size - self._state_offset)
        if self.state_codec is not None:  # before the launch: each block starts from these
            defaults = self.state_codec.defaults()
            for block in range(info.grid):
                self.region.state_write(self._state_offset, block, defaults)
        return self.region

    @property
    def rings(self) -> rings.Region:
        if self.region is None:
            raise KernelStateError(f"kernel {self.kernel_id!r} has no region (not launched)")
        return self.region

    def _connect_notify(self, kernel_writes: bool) -> None:
        """Wake armed event loops through notify_fd: written by the kernel's own process (CPU
        backend), or by a watcher thread for a kernel that rings no bell (a GPU), which
        _wait_started starts once the kernel runs (earlier, it would outlive a failed launch)."""
        self.rings.set_notify_fd(self.notify_fd, kernel_writes)
        self._needs_watcher = not kernel_writes

    def _release_region(self) -> None:
        """The region's memory is about to go: later calls raise instead of touching it."""
        if self.region is not None:
            self.region.detach()  # stops a watcher thread first
        os.close(self.notify_fd)

    # -- rings ----------------------------------------------------------------------------

    def push(self, block: int, lane: int, structs: np.ndarray | bytes) -> int:
        """Push as many of `structs` as fit (a contiguous array of the input dtype, or the
        bytes of such structs: one message packs to bytes without numpy); returns the count."""
        if not isinstance(structs, bytes):
            self._check_structs(structs)
            structs = structs.view(np.uint8)
        try:
            return self.rings.push(block, lane, structs)
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def push_quiet(self, block: int, lane: int, data: bytes) -> int:
        """push() of packed structs without ringing the kernel's doorbell: the caller rings it
        (ring()) once for a burst of pushes. A kernel asleep meanwhile takes them when rung,
        or when its nap ends."""
        try:
            return self.rings.push_quiet(block, lane, data)
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def ring(self) -> None:
        """Ring the doorbell: a kernel asleep on it wakes and looks at its lanes."""
        try:
            self.rings.ring()
        except self._region_released:
            raise self._released() from None

    def push_wait(self, block: int, lane: int, structs: np.ndarray, timeout: float) -> int:
        """Push all of `structs`, sleeping (without the GIL) while the lane is full, for at most
        `timeout` seconds; returns how many went in."""
        self._check_structs(structs)
        flat = structs.view(np.uint8)
        done, deadline = 0, time.monotonic() + timeout
        while done < len(structs):
            left = deadline - time.monotonic()
            step = int(min(max(left, 0.0), self.death_check_s) * 1e9)
            try:
                done += self.rings.push_wait(block, lane, flat[done * structs.itemsize:], step,
                                             self.push_nap_ns)
            except self._region_fault as e:
                raise self._broken(e) from None
            except self._region_released:
                raise self._released() from None
            if left <= 0 or self.failure() is not None:
                break
        return done

    def _check_structs(self, structs: np.ndarray) -> None:
        if structs.dtype != self.in_dtype or not structs.flags.c_contiguous:
            raise TypeError(f"push takes a contiguous array of {self.info.input.__name__} structs")

    def lane_size(self, block: int, lane: int) -> int:
        """Requests waiting in a lane, not yet taken by the kernel."""
        try:
            return self.rings.lane_size(block, lane)
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def lane_free(self, block: int, lane: int) -> int:
        """Slots of a lane the host may push into: a slot is reused only once the kernel has
        finished the request in it, so a kernel that dies leaves what it held readable."""
        try:
            return self.rings.lane_free(block, lane)
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def pop(self, max_count: int, timeout: float = 0.0) -> np.ndarray:
        """Up to max_count responses (the output dtype); waits up to `timeout` s for the first."""
        raw = self.pop_bytes(max_count, timeout)
        assert self.info.out_dtype is not None  # pop_bytes refuses a kernel without output
        return np.frombuffer(bytearray(raw), dtype=self.info.out_dtype)

    def pop_bytes(self, max_count: int, timeout: float = 0.0, clear_notify: bool = False) -> bytes:
        """pop() as the bytes of the structs: what a few responses at a time want, since
        making even a one-row structured array costs numpy microseconds. With clear_notify,
        `notify_fd` is read first (what an event loop woken by it wants)."""
        if self.info.out_dtype is None:
            raise KernelStateError(f"kernel {self.kernel_id!r} has no output (fire-and-forget)")
        if self.host_fault is not None:  # nothing in a broken region is to be trusted
            raise self._broken(None)
        try:
            if timeout <= 0:  # what is there now: the event loop's pop, on every awaited response
                return self.rings.pop(max_count, 0, 0, 0, clear_notify)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                step = int(min(max(left, 0.0), self.death_check_s) * 1e9)
                raw = self.rings.pop(max_count, step, self.poll_ns, self.pop_spin_ns,
                                     clear_notify)
                if raw or left <= 0 or self.failure() is not None:
                    return raw
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def push_pop(self, block: int, lane: int, data: bytes, max_count: int,
                 spin_s: float) -> bytes | None:
        """push() of one packed message, then its responses as pop_bytes() gives them, polled
        for in native code without the GIL (no nap: a reply due within microseconds is seen
        the moment it lands) up to spin_s for the first; in one native call, a lone request's
        ring part. None if the lane was full (nothing pushed)."""
        if self.info.out_dtype is None:
            raise KernelStateError(f"kernel {self.kernel_id!r} has no output (fire-and-forget)")
        if self.host_fault is not None:
            raise self._broken(None)
        try:
            return self.rings.push_pop(block, lane, data, max_count, int(spin_s * 1e9))
        except self._region_fault as e:
            raise self._broken(e) from None
        except self._region_released:
            raise self._released() from None

    def _released(self) -> KernelStateError:
        """For a call that came after the region's release (terminate, close), or whose wait
        in native code the release ended from another thread."""
        return KernelStateError(f"kernel {self.kernel_id!r} was terminated or closed: its "
                                "region is released")

    def _broken(self, fault: RuntimeError | None) -> KernelFaultError:
        """The kernel wrote indices into its region that no ring can have (a handler writing
        out of bounds): the host stops it and reads nothing more from it. Returns the error for
        the caller; failure() gives the reason from now on."""
        if self.host_fault is None and fault is not None:
            self.host_fault = f"{fault}; the host stopped it"
            log.error("kernel %s: %s", self.kernel_id, self.host_fault)
            self.abandon(self.host_fault)
        return KernelFaultError(f"kernel {self.kernel_id!r} failed: {self.host_fault}")

    # -- lifecycle ------------------------------------------------------------------------

    def command(self, command: int, timeout: float) -> bool:
        """Send a command to every block; True once all acknowledged it within `timeout`."""
        try:
            seq = self.rings.command(command)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                step = min(self.death_check_s, max(deadline - time.monotonic(), 0.0))
                if self.rings.wait_ack(seq, int(step * 1e9)):
                    return True
                if self.failure() is not None:
                    return False
            return self.rings.wait_ack(seq, 0)
        except self._region_released:
            raise self._released() from None

    def activate(self, timeout: float = 1.0) -> None:
        self._expect(self.command(rings.CMD_ACTIVATE, timeout), "activate", timeout)

    def deactivate(self, timeout: float = 1.0) -> None:
        self._expect(self.command(rings.CMD_DEACTIVATE, timeout), "deactivate", timeout)

    def _expect(self, acked: bool, what: str, timeout: float) -> None:
        if acked:
            return
        reason = self.failure()
        if reason is not None:
            raise KernelFaultError(f"kernel {self.kernel_id!r} failed: {reason}")
        raise KernelStateError(f"kernel {self.kernel_id!r} did not acknowledge {what} within "
                               f"{timeout} s; is a handler stuck in a loop?")

    def read_state(self, timeout: float) -> list[Any]:
        """One consistent snapshot of each block's state, taken between two of its messages
        (paused blocks answer too); KernelStateError for a kernel without state= or a block
        that does not answer within `timeout` seconds."""
        with self._state_lock:  # one snapshot handshake at a time per slot
            return self._read_state(timeout)

    def _read_state(self, timeout: float) -> list[Any]:
        codec = self.state_codec
        if codec is None:
            raise KernelStateError(f"kernel {self.kernel_id!r} has no state; declare it with "
                                   "@ring_kernel(..., state=YourStateDataclass)")
        out = []
        for block in range(self.grid):
            try:
                data = self.rings.state_snapshot(self._state_offset, block, codec.size,
                                                 int(timeout * 1e9))
            except self._region_released:
                raise self._released() from None
            if data is None:
                reason = self.failure()
                if reason is not None:
                    raise KernelFaultError(f"kernel {self.kernel_id!r} failed: {reason}")
                raise KernelStateError(
                    f"block {block} of kernel {self.kernel_id!r} gave no state snapshot within "
                    f"{timeout} s; a snapshot is taken between two messages, so a handler is "
                    "running that long (or the kernel has stopped)")
            out.append(codec.unpack(data))
        return out

    def routed_in(self) -> int:
        """Messages the blocks took from routes: processed, but never sent by the host."""
        if self.closed:
            return self._routed_in_final
        self._routed_in_final = sum(n for n, _ in self.rings.link_counts(self.links_offset))
        return self._routed_in_final

    _routed_in_final = 0

    def set_buffer(self, slot: int, entry: tuple[int, int, int, int, int, str]) -> None:
        """Publish a UnifiedBuffer in the kernel's table (an id of 0 frees the slot)."""
        try:
            self.rings.set_buffer(slot, *entry)
        except IndexError as e:
            raise KernelStateError(str(e)) from None

    def arm(self, armed: bool) -> None:
        """Ask (or stop asking) to be notified through `notify_fd` of every response."""
        self.rings.arm(armed)

    def status(self) -> list[BlockStatus]:
        return [BlockStatus(state & 0xFF, *counts) for state, *counts in self.rings.status()]

    start_timeout = 10.0  # seconds for every block to show a heartbeat after the launch

    def _wait_started(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if all(s.heartbeat > 0 for s in self.status()):
                if self._needs_watcher:
                    self.rings.start_watcher(self.watch_nap_ns, self.pop_spin_ns)
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

    @abstractmethod
    def abandon(self, reason: str) -> None:
        """Give up on a hung kernel, or one that broke its region: stop it as far as the
        backend can; failure() gives `reason` from now on."""

    def hung(self, reason: str) -> None:
        """The watchdog found the kernel hung: abandon it (the CUDA backend also loses the
        device, which device_lost() then says)."""
        self.abandon(reason)

    def device_lost(self) -> str | None:
        """Why this kernel's device can run no kernel again in this process; None: it can."""
        return None

    @abstractmethod
    def exited(self) -> bool:
        """True once the kernel runs no more (terminated, crashed or killed)."""

    def unfinished(self) -> tuple[np.ndarray, np.ndarray]:
        """What the kernel took and never finished (the batch each block was handling -- all
        of it where a terminate cut off one of its sends (rg_outs::stopped), though handlers of
        it ran -- and one whose response a full output ring kept back), then what it never took
        from its lanes, highest lane first (input dtype); both empty while the kernel might
        still run. A request handled without a response counts as finished, so it is in
        neither."""
        if self.closed or not self.exited():
            empty = np.empty(0, dtype=self.in_dtype)
            return empty, empty
        size = self.in_dtype.itemsize
        held, untaken = [], []
        for block in range(self.grid):
            for lane in range(rings.LANES - 1, -1, -1):
                try:
                    raw, n = self.rings.take_lane(block, lane)
                except self._region_fault as e:  # which requests it took cannot be known
                    log.error("kernel %s: the requests left in lane %d of block %d are lost: %s",
                              self.kernel_id, lane, block, e)
                    continue
                held.append(raw[:n * size])
                untaken.append(raw[n * size:])
        return (np.frombuffer(bytearray(b"".join(held)), dtype=self.in_dtype),
                np.frombuffer(bytearray(b"".join(untaken)), dtype=self.in_dtype))

    def terminate(self, timeout: float = 1.0) -> None:
        try:
            self.stop(timeout)
        except KernelStateError:
            if not self.closed:
                raise
            return  # another thread terminated or closed it meanwhile: what was asked is done
        self.release()
