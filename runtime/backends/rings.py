"""The host side of the rings: _rg_host (templates/rg_host.cpp), a pybind11 module compiled into
the compile cache on first use. Its `Region` drives one kernel's region in place.

The calls that wait release the GIL while they wait, so a thread blocked in `pop` does not
stop the event loop or the other kernels' threads.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from typing import Protocol, cast

import numpy as np

from ringgen.toolchain.compile import compile_host_module

STATE_LAUNCHED, STATE_ACTIVE, STATE_PAUSED, STATE_TERMINATED = 0, 1, 2, 3
CMD_ACTIVATE, CMD_DEACTIVATE, CMD_TERMINATE = 1, 2, 3
LANES = 5


class Region(Protocol):
    """_rg_host.Region: one kernel's region, laid out in place at an address."""

    def push(self, block: int, lane: int, structs: bytes | np.ndarray, /) -> int: ...
    def push_wait(self, block: int, lane: int, structs: bytes | np.ndarray, timeout_ns: int,
                  nap_ns: int, /) -> int: ...
    def lane_size(self, block: int, lane: int, /) -> int: ...
    def pop(self, max_count: int, timeout_ns: int, poll_ns: int, spin_ns: int,
            clear_notify: bool, /) -> bytes: ...
    def take_lane(self, block: int, lane: int, /) -> bytes: ...
    def command(self, command: int, /) -> int: ...
    def wait_ack(self, seq: int, timeout_ns: int, /) -> bool: ...
    def status(self) -> list[tuple[int, int, int, int, int]]: ...
    def arm(self, armed: bool, /) -> None: ...
    def set_notify_fd(self, fd: int, kernel_writes: bool, /) -> None: ...
    def start_watcher(self, nap_ns: int, spin_ns: int, /) -> None: ...
    def set_spin(self, spin_ns: int, /) -> None: ...
    def set_buffer(self, slot: int, buffer_id: int, device_ptr: int, nbytes: int,
                   dtype_code: int, itemsize: int, path: str, /) -> None: ...
    def state_write(self, area_offset: int, block: int, data: bytes, /) -> None: ...
    def state_snapshot(self, area_offset: int, block: int, state_size: int,
                       timeout_ns: int, /) -> bytes | None: ...
    def detach(self) -> None: ...


class RegionType(Protocol):
    def __call__(self, address: int, grid: int, block: int, lane_capacity: int,
                 out_capacity: int, in_slot: int, out_slot: int, seed: int) -> Region: ...
    def size(self, grid: int, block: int, lane_capacity: int, out_capacity: int, in_slot: int,
             out_slot: int, /) -> int: ...
    def state_area(self, region_size: int, grid: int, state_size: int, /) -> tuple[int, int]: ...


@functools.lru_cache(maxsize=1)
def region_type() -> RegionType:
    path = str(compile_host_module().path)
    loader = importlib.machinery.ExtensionFileLoader("_rg_host", path)
    spec = importlib.util.spec_from_file_location("_rg_host", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return cast(RegionType, module.Region)


def lane_of(priority: int) -> int:
    """The lane of a priority class: low 0-63, below normal 64-127, normal 128, above
    normal 129-191, high 192-255 (lane 0 lowest)."""
    return 0 if priority < 64 else 1 if priority < 128 else 2 if priority == 128 else \
        3 if priority < 192 else 4


LANE_OF = tuple(lane_of(p) for p in range(256))
