"""The host side of the rings: _rg_host (templates/rg_host.cpp), a pybind11 module compiled into
the compile cache on first use. Its `Region` drives one kernel's region in place.

The calls that wait release the GIL while they wait, so a thread blocked in `pop` does not
stop the event loop or the other kernels' threads.

The ring protocol's constants (lanes, commands, states, the lane of each priority, the size of
the buffer table) are rg_ring.h's, exported by the module: they are read from it on first use,
so that importing ringgen compiles nothing.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from types import ModuleType
from typing import Protocol, cast

import numpy as np

from ringgen.toolchain.compile import compile_host_module

# Filled in from _rg_host by __getattr__ on first use.
LANES: int
MAX_BUFFERS: int
CMD_ACTIVATE: int
CMD_DEACTIVATE: int
CMD_TERMINATE: int
STATE_LAUNCHED: int
STATE_ACTIVE: int
STATE_PAUSED: int
STATE_TERMINATED: int
LANE_OF: tuple[int, ...]  # the lane of each priority 0..255 (lane 0 lowest)
_CONSTANTS = ("LANES", "MAX_BUFFERS", "CMD_ACTIVATE", "CMD_DEACTIVATE", "CMD_TERMINATE",
              "STATE_LAUNCHED", "STATE_ACTIVE", "STATE_PAUSED", "STATE_TERMINATED", "LANE_OF")


class Region(Protocol):
    """_rg_host.Region: one kernel's region, laid out in place at an address."""

    def push(self, block: int, lane: int, structs: bytes | np.ndarray, /) -> int: ...
    def push_wait(self, block: int, lane: int, structs: bytes | np.ndarray, timeout_ns: int,
                  nap_ns: int, /) -> int: ...
    def lane_size(self, block: int, lane: int, /) -> int: ...
    def pop(self, max_count: int, timeout_ns: int, poll_ns: int, spin_ns: int,
            clear_notify: bool, /) -> bytes: ...
    def lane_free(self, block: int, lane: int, /) -> int: ...
    def take_lane(self, block: int, lane: int, /) -> tuple[bytes, int]: ...
    def command(self, command: int, /) -> int: ...
    def wait_ack(self, seq: int, timeout_ns: int, /) -> bool: ...
    def status(self) -> list[tuple[int, int, int, int, int]]: ...
    def arm(self, armed: bool, /) -> None: ...
    def set_notify_fd(self, fd: int, kernel_writes: bool, /) -> None: ...
    def start_watcher(self, nap_ns: int, spin_ns: int, /) -> None: ...
    def set_spin(self, spin_ns: int, /) -> None: ...
    def set_buffer(self, slot: int, buffer_id: int, device_ptr: int, nbytes: int,
                   dtype_code: int, itemsize: int, path: str, /) -> None: ...
    def detach(self) -> None: ...


class RegionType(Protocol):
    def __call__(self, address: int, grid: int, block: int, lane_capacity: int,
                 out_capacity: int, in_slot: int, out_slot: int, seed: int) -> Region: ...
    def size(self, grid: int, block: int, lane_capacity: int, out_capacity: int, in_slot: int,
             out_slot: int, /) -> int: ...


@functools.lru_cache(maxsize=1)
def native() -> ModuleType:
    """The _rg_host module, compiled into the cache on first use."""
    path = str(compile_host_module().path)
    loader = importlib.machinery.ExtensionFileLoader("_rg_host", path)
    spec = importlib.util.spec_from_file_location("_rg_host", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def region_type() -> RegionType:
    return cast(RegionType, native().Region)


def region_fault() -> type[RuntimeError]:
    """_rg_host.RegionFault: what a Region raises when its kernel broke the ring protocol
    (wrote impossible indices into its region)."""
    return cast(type[RuntimeError], native().RegionFault)


def __getattr__(name: str) -> object:
    if name not in _CONSTANTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = native()
    globals().update((n, getattr(module, n)) for n in _CONSTANTS)  # later reads go straight
    return globals()[name]

