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
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ringgen.errors import BackendUnavailableError
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
