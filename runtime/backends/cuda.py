"""The CUDA backend: the same generated kernels, launched persistently through PyCUDA.

pycuda is the `cuda` extra and is imported only here, lazily. The ring region is mapped pinned
memory (pagelocked, DEVICEMAP): the host side uses _rg_host on its host address exactly as on
the CPU backend, and the kernel gets the device address as an np.uintp. Modules, streams and
allocations are all made before the persistent launch (with CUDA_MODULE_LOADING=EAGER, set
before the context exists), because a lazy module load or a stream creation can block behind a
running persistent kernel; the kernel runs on a non-blocking stream and nothing touches the
legacy stream while it runs.

`launch(..., device=N)` runs a kernel on GPU N (CUDA's numbering; CUDA_VISIBLE_DEVICES picks and
orders them): each device has its primary context and its own count of resident blocks. The
rings are pinned host memory, mapped into the context of the kernel's device.

Routes between kernels (runtime.connect, runtime/routes.py) are placed by `placement`: between
two kernels of one GPU in that GPU's memory (device-scope atomics, nothing crosses the bus);
between GPUs that can reach each other's memory (cuDeviceCanAccessPeer) in the target's memory,
peer access enabled from the sender's context (system scope: device scope covers one GPU);
otherwise in mapped pinned host memory (system scope), which the host drains: into a host
actor, the dead letters, or the target kernel on a GPU the sender cannot reach. Device memory
for routes comes from one arena per GPU, allocated with its copy stream before the first
persistent launch on it (an allocation may wait for a device that is never idle once a
persistent kernel runs).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ringgen.errors import BackendUnavailableError, KernelStateError
from ringgen.runtime.backends import rings
from ringgen.runtime.backends.base import (
    DEFAULT_LANE_CAPACITY,
    DEFAULT_OUT_CAPACITY,
    KernelDef,
    RingKernel,
)
from ringgen.toolchain.compile import compile_cubin

log = logging.getLogger("ringgen.cuda")

_lock = threading.Lock()
_contexts: dict[int, tuple[Any, Any]] = {}  # device number -> (the device, its primary context)
_resident_blocks: dict[int, int] = {}  # device -> blocks of the persistent kernels running now
# Per device, why it can run no kernel again in this process, once that happened: a hung
# persistent kernel can only be stopped by destroying the context every kernel on the device
# shares, and a device-side fault (an illegal address, __trap(), a failed assert) is sticky: the
# context is unusable.
_lost: dict[int, str] = {}


def _lose_device(device: int, reason: str) -> None:
    with _lock:
        _lost.setdefault(device, reason)


def _driver() -> Any:
    os.environ.setdefault("CUDA_MODULE_LOADING", "EAGER")  # before any context exists
    import pycuda.driver as drv

    return drv


def probe() -> str | None:
    """None if the cuda backend can run here, else why not (and how to fix it)."""
    try:
        drv = _driver()
    except ImportError:
        return "pycuda is not installed (pip install 'ringgen[cuda]' on a machine with a driver)"
    try:
        drv.init()
        if drv.Device.count() == 0:
            return "the CUDA driver reports no device"
    except Exception as e:  # pycuda raises its own LogicError/RuntimeError kinds
        return f"the CUDA driver did not answer ({e})"
    return None


def _device(number: int = 0) -> tuple[Any, Any, Any]:
    """(driver, device `number`, its primary context), made once per process and device."""
    drv = _driver()
    with _lock:
        if number not in _contexts:
            drv.init()
            count = drv.Device.count()
            if number >= count:
                raise BackendUnavailableError(
                    f"there is no GPU {number}: the CUDA driver shows {count} (0 to {count - 1}; "
                    "CUDA_VISIBLE_DEVICES chooses which); launch it with a device below that")
            device = drv.Device(number)
            _check_device(drv, device)
            _contexts[number] = (device, device.retain_primary_context())
        device, context = _contexts[number]
        return drv, device, context


def device_name() -> str:
    _, device, _ = _device()
    return f"{device.name()}, sm_{''.join(map(str, device.compute_capability()))}"


def _check_device(drv: Any, device: Any) -> None:
    attr = drv.device_attribute
    if device.get_attribute(attr.KERNEL_EXEC_TIMEOUT):
        raise BackendUnavailableError(
            f"{device.name()} has a kernel run-time limit (a display watchdog), which would "
            "kill a persistent kernel; use a GPU without a display attached")
    if not device.get_attribute(attr.CAN_MAP_HOST_MEMORY) or not device.get_attribute(
            attr.UNIFIED_ADDRESSING):
        raise BackendUnavailableError(f"{device.name()} cannot map host memory, which the "
                                      "rings live in")
    if not device.get_attribute(attr.CONCURRENT_MANAGED_ACCESS):
        log.warning("%s lacks concurrent managed access: UnifiedBuffers cannot be touched "
                    "by the host while kernels run", device.name())


@contextmanager
def current_context(device: int = 0) -> Iterator[Any]:
    """Device `device`'s primary context, current in this thread for the length of the block."""
    drv, _, context = _device(device)
    context.push()
    try:
        yield drv
    finally:
        drv.Context.pop()


class CudaKernel(RingKernel):
    backend_name = "cuda"
    start_timeout = 30.0
    # No GPU rings a bell: a waiting pop, and the watcher thread that wakes an armed event
    # loop, poll the rings for pop_spin_ns (a response within it is seen at once), then nap.
    poll_ns = 20_000
    pop_spin_ns = 200_000

    def __init__(self, info: KernelDef, lane_capacity: int = DEFAULT_LANE_CAPACITY,
                 out_capacity: int = DEFAULT_OUT_CAPACITY, device: int = 0):
        lost = _lost.get(device)
        if lost is not None:
            raise BackendUnavailableError(
                f"kernel {info.kernel_id!r} cannot be launched: CUDA device {device} is lost to "
                f"this process ({lost}); restart the process, or launch it on another device")
        super().__init__(info, lane_capacity, out_capacity, device)
        with current_context(self.device) as drv:
            _, gpu, _ = _device(self.device)
            self._drv = drv
            sms = gpu.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
            with _lock:
                resident = _resident_blocks.get(self.device, 0)
                if resident + info.grid > sms:
                    raise BackendUnavailableError(
                        f"kernel {info.kernel_id!r} needs {info.grid} resident blocks but "
                        f"{resident} of GPU {self.device}'s {sms} multiprocessors already run "
                        "persistent blocks; a block that cannot be resident would starve the "
                        "others. Lower grid, launch it on another device, or terminate a "
                        "kernel first")
                _resident_blocks[self.device] = resident + info.grid
            self._blocks = info.grid
            major, minor = gpu.compute_capability()
            cubin = compile_cubin(Path(info.package_dir), info.kernel_id, f"sm_{major}{minor}")
            self.module = drv.module_from_buffer(cubin.path.read_bytes())
            self.function = self.module.get_function(f"{info.kernel_id}_ring_kernel")
            limit = self.function.get_attribute(drv.function_attribute.MAX_THREADS_PER_BLOCK)
            if info.block > limit:
                raise BackendUnavailableError(
                    f"kernel {info.kernel_id!r} asks for {info.block} threads a block; its code "
                    f"allows at most {limit} on {gpu.name()} (registers); lower block")
            self.stream = drv.Stream(flags=1)  # CU_STREAM_NON_BLOCKING
            _route_arena(drv, self.device)  # before the first persistent launch: see RouteArena
            self.memory = drv.pagelocked_empty(self.region_size, np.uint8,
                                               mem_flags=drv.host_alloc_flags.DEVICEMAP)
            self._init_region(self.memory.ctypes.data, secrets.randbits(64))
            self._connect_notify(kernel_writes=False)
            device_ptr = np.uintp(self.memory.base.get_device_pointer())
            self.function(device_ptr, block=(info.block, 1, 1), grid=(info.grid, 1),
                          stream=self.stream)
        self._fault: str | None = None
        self._wait_started()
        # A faulted GPU kernel tells no one (the CPU backend's runner process ends, and its
        # stderr reader says so): this thread looks, so that pending requests fail promptly.
        threading.Thread(target=self._watch_for_fault, daemon=True,
                         name=f"ringgen-{info.kernel_id}-fault-watch").start()

    fault_check_s = 0.02

    def _watch_for_fault(self) -> None:
        while not self.closed:
            time.sleep(self.fault_check_s)
            try:
                if self.closed or self.failure() is not None or self.exited():
                    return  # failure() called on_exit; a clean exit was a terminate
            except Exception as e:  # the region went away under us: released meanwhile
                log.debug("kernel %s: fault watch ends: %s", self.kernel_id, e)
                return

    def failure(self) -> str | None:
        if self._fault is not None or self.closed:
            return self._fault
        with current_context(self.device) as drv:
            if not self.stream.is_done():
                return None
            try:
                self.stream.synchronize()
            except drv.Error as e:  # an illegal address, __trap(), a failed assert...
                reason = f"{type(e).__name__}: {e}"
                _lose_device(self.device, f"kernel {self.kernel_id!r} faulted on the device "
                             f"({reason}), which leaves the CUDA context unusable")
                return self._failed(reason)
        if all(s.state == rings.STATE_TERMINATED for s in self.status()):
            return None
        return self._failed("the kernel returned without being terminated")

    def _failed(self, reason: str) -> str:
        self._fault = reason
        if self.on_exit is not None:
            self.on_exit()
        return reason

    def stop(self, timeout: float = 1.0) -> None:
        if self.closed or self.failure() is not None:
            return
        acked = self.command(rings.CMD_TERMINATE, timeout)
        deadline = time.monotonic() + (timeout if acked else 0.1)
        with current_context(self.device):
            while not self.stream.is_done() and time.monotonic() < deadline:
                time.sleep(0.0005)
            if not self.stream.is_done():
                # A persistent kernel cannot be killed alone: the context would have to go.
                log.error("kernel %s did not exit within %.1f s of terminate; it keeps its "
                          "blocks until the process ends", self.kernel_id, timeout)

    def abandon(self, reason: str) -> None:
        """What can be saved of a hung GPU kernel: its waiters fail, the requests behind it and
        later sends are refused. What cannot: a persistent kernel cannot be stopped alone (only by
        destroying the context, which every kernel of this process shares), so its blocks stay
        occupied and its region allocated until the process ends; the request it holds may even
        be answered later, into a region nobody reads. Blocks that still run their loop (a
        kernel that broke its region rather than hung) end on the terminate command."""
        self.rings.command(rings.CMD_TERMINATE)
        self._failed(reason)

    def hung(self, reason: str) -> None:
        """A hung persistent kernel cannot be stopped without destroying the context, which
        every kernel of this process shares: the device is lost (the runtime fails every kernel
        on it, and supervision restarts none), and this kernel is abandoned."""
        _lose_device(self.device, f"kernel {self.kernel_id!r} hung, and a hung GPU kernel cannot "
                     "be stopped without destroying the CUDA context every kernel on it shares")
        self.abandon(reason)

    def device_lost(self) -> str | None:
        return _lost.get(self.device)

    def exited(self) -> bool:
        if self.closed:
            return True
        with current_context(self.device):
            return bool(self.stream.is_done())

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release_region()
        with current_context(self.device):
            if self.stream.is_done():
                self.memory.base.free()
                with _lock:
                    _resident_blocks[self.device] -= self._blocks


# -- routes (runtime/routes.py) ----------------------------------------------------------------

SCOPE_DEVICE, SCOPE_SYSTEM = 0, 1  # RG_ROUTE_DEVICE, RG_ROUTE_SYSTEM of rg_route.h
DEFAULT_ROUTE_ARENA_MB = 64  # device memory kept for routes per GPU; RINGGEN_CUDA_ROUTE_MB
ROUTE_ALIGN = 128  # a route's rings are laid out on 128-byte lines (rg_route.h)


def placement(src_device: int, dst_device: int | None, peer: bool) -> str:
    """Where a route from a kernel on src_device lives: "device" (the GPU both ends run on),
    "peer" (the target's GPU, which the sender's can reach: `peer`), or "host" (mapped pinned
    memory, drained by the host: dst_device None is a host consumer, or the GPUs cannot reach
    each other)."""
    if dst_device is None:
        return "host"
    if dst_device == src_device:
        return "device"
    return "peer" if peer else "host"


class FreeList:
    """First-fit allocation of ROUTE_ALIGN-aligned pieces of `size` bytes, freed pieces merged."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free: list[tuple[int, int]] = [(0, size)]  # (offset, size), sorted by offset

    def allocate(self, size: int) -> int | None:
        size = -(-size // ROUTE_ALIGN) * ROUTE_ALIGN
        for i, (offset, room) in enumerate(self.free):
            if room >= size:
                self.free[i:i + 1] = [(offset + size, room - size)] if room > size else []
                return offset
        return None

    def release(self, offset: int, size: int) -> None:
        size = -(-size // ROUTE_ALIGN) * ROUTE_ALIGN
        merged: list[tuple[int, int]] = []
        for o, n in sorted([*self.free, (offset, size)]):
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((o, n))
        self.free = merged


class RouteArena:
    """One GPU's device memory for routes, allocated once (before any persistent kernel runs
    on it), with pinned staging where the host lays a route out (rg_route_init, the same code as
    on the CPU backend) or reads one back, and a non-blocking stream for those copies."""

    def __init__(self, drv: Any, size: int) -> None:
        self.memory = drv.mem_alloc(size)
        self.staging = drv.pagelocked_empty(size, np.uint8)
        self.stream = drv.Stream(flags=1)  # CU_STREAM_NON_BLOCKING: never waits for the kernels
        self.pieces = FreeList(size)

    def allocate(self, size: int) -> int:
        with _lock:
            offset = self.pieces.allocate(size)
        if offset is None:
            raise BackendUnavailableError(
                f"no room for a route of {size} bytes in the {self.pieces.size >> 20} MiB of "
                "device memory kept for routes; set RINGGEN_CUDA_ROUTE_MB higher (read at the "
                "first launch on a GPU), or connect kernels with smaller grids or messages")
        return offset

    def release(self, offset: int, size: int) -> None:
        with _lock:
            self.pieces.release(offset, size)


_arenas: dict[int, RouteArena] = {}


def _route_arena(drv: Any, device: int) -> RouteArena:
    """GPU `device`'s route arena, made by its first launch (its context is current)."""
    with _lock:
        arena = _arenas.get(device)
        if arena is None:
            mb = int(os.environ.get("RINGGEN_CUDA_ROUTE_MB", DEFAULT_ROUTE_ARENA_MB))
            arena = _arenas[device] = RouteArena(drv, mb << 20)
        return arena


def can_access_peer(src_device: int, dst_device: int) -> bool:
    """Whether kernels on src_device can read and write dst_device's memory."""
    _, src, _ = _device(src_device)
    _, dst, _ = _device(dst_device)
    return bool(src.can_access_peer(dst))


_peers: set[tuple[int, int]] = set()  # (from, to) pairs with peer access enabled


def _enable_peer(src_device: int, dst_device: int) -> None:
    """Peer access from src_device's context to dst_device's memory, once per pair."""
    with _lock:
        if (src_device, dst_device) in _peers:
            return
    _, _, dst_context = _device(dst_device)
    with current_context(src_device) as drv:
        try:
            drv.Context.enable_peer_access(dst_context)
        except drv.LogicError as e:  # CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED: what we want
            if "ALREADY" not in str(e).upper():
                raise  # not recorded: the next route of the pair tries again
    with _lock:
        _peers.add((src_device, dst_device))


@dataclass(frozen=True)
class Rows:
    """Rows of a route's memory, for a strided copy: `count` rows of `width` bytes, the first
    at `first`, one every `pitch` bytes."""

    first: int
    width: int
    pitch: int
    count: int


@dataclass
class RouteMemory:
    """A route's memory on the cuda backend: `device_ptr` is what the sender's (and the
    target's) blocks use, `scope` the RG_ROUTE_* of their atomics, `host` the host's address of
    it (pinned memory, which the host drains) or 0 (GPU memory: see read_back)."""

    device_ptr: int
    scope: int
    host: int
    size: int
    forwarded: bool = False  # pinned between GPUs: the host forwards it into the target's lanes
    _arena: RouteArena | None = None
    _offset: int = 0
    _device: int = 0  # the GPU whose memory it is (with _arena)
    _pinned: Any = None

    def read_back(self) -> int:
        """GPU memory, copied into its arena's pinned staging once nothing writes it any more
        (its senders no longer push into it, its target is gone): the host's address of the
        copy, which the host then drains into dead letters. Pinned memory: itself."""
        if self._arena is None:
            return self.host
        staging = self._arena.staging[self._offset:self._offset + self.size]
        with current_context(self._device) as drv:
            drv.memcpy_dtoh_async(staging, self.device_ptr, self._arena.stream)
            self._arena.stream.synchronize()
        return int(staging.ctypes.data)

    def write_back(self, offset: int) -> None:
        """Copies the staging copy that read_back made, from `offset` on, back to GPU memory:
        what the host took from the rings there (their heads), where no block writes meanwhile.
        Pinned memory: nothing to do (the host wrote it in place)."""
        if self._arena is None:
            return
        staging = self._arena.staging[self._offset + offset:self._offset + self.size]
        with current_context(self._device) as drv:
            drv.memcpy_htod_async(self.device_ptr + offset, staging, self._arena.stream)
            self._arena.stream.synchronize()

    def read_rows(self, rows: Rows) -> int:
        """GPU memory: the `rows` of it (each ring's header: its indices) copied into its
        arena's staging, where they lie as in the route, in one 2D copy while the kernels run
        (the rest of the copy is stale): the host's address of the copy. Pinned: itself."""
        if self._arena is None:
            return self.host
        staging = self._arena.staging[self._offset:self._offset + self.size]
        with current_context(self._device) as drv:
            copy = drv.Memcpy2D()
            copy.set_src_device(self.device_ptr + rows.first)
            copy.set_dst_host(staging[rows.first:])
            copy.src_pitch = copy.dst_pitch = rows.pitch
            copy.width_in_bytes = rows.width
            copy.height = rows.count
            copy(self._arena.stream)
            self._arena.stream.synchronize()
        return int(staging.ctypes.data)

    def free(self) -> None:
        """After every kernel that used it stopped."""
        if self._arena is not None:
            self._arena.release(self._offset, self.size)
        elif self._pinned is not None:
            self._pinned.base.free()
            self._pinned = None


def route_memory(size: int, lay_out: Any, src_device: int, dst_device: int | None) -> RouteMemory:
    """Memory for a route of `size` bytes from a kernel on src_device to one on dst_device
    (None: the host consumes it), laid out by `lay_out(address)` (rg_route_init) on host memory
    first. Where it goes: `placement`."""
    peer = (dst_device is not None and dst_device != src_device
            and can_access_peer(src_device, dst_device))
    where = placement(src_device, dst_device, peer)
    if where == "host":
        # Portable: mapped in every context, so whichever GPU sends (or forwards) reaches it;
        # with unified addressing its device address is its host address.
        drv, _, _ = _device(src_device)
        with current_context(src_device):
            pinned = drv.pagelocked_empty(size, np.uint8, mem_flags=(
                drv.host_alloc_flags.DEVICEMAP | drv.host_alloc_flags.PORTABLE))
            lay_out(pinned.ctypes.data)
            device_ptr = int(pinned.base.get_device_pointer())
        return RouteMemory(device_ptr, SCOPE_SYSTEM, int(pinned.ctypes.data), size,
                           _pinned=pinned)
    home = src_device if where == "device" else dst_device
    assert home is not None
    if where == "peer":
        _enable_peer(src_device, home)
    arena = _arenas.get(home)
    if arena is None:
        raise KernelStateError(f"routes on GPU {home} need a kernel launched there first: "
                               "launch both ends, then connect them")
    offset = arena.allocate(size)
    staging = arena.staging[offset:offset + size]
    lay_out(staging.ctypes.data)
    device_ptr = int(arena.memory) + offset
    with current_context(home) as drv:
        drv.memcpy_htod_async(device_ptr, staging, arena.stream)
        arena.stream.synchronize()
    return RouteMemory(device_ptr, SCOPE_DEVICE if where == "device" else SCOPE_SYSTEM, 0, size,
                       _arena=arena, _offset=offset, _device=home)
