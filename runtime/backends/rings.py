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
# Offsets of the words the host reads and writes by address (routes.py), from offsetof.
ROUTE_LOST_AT: int  # rg_route::lost
ROUTE_HOST_DRAINS_AT: int  # rg_route::host_drains
RING_DONE_AT: int  # rg_ring::head.done
RING_TAIL_AT: int  # rg_ring::tail.value
RING_HEAD_BYTES: int  # rg_ring's head.value and head.done, from the ring's start
_CONSTANTS = ("LANES", "MAX_BUFFERS", "CMD_ACTIVATE", "CMD_DEACTIVATE", "CMD_TERMINATE",
              "STATE_LAUNCHED", "STATE_ACTIVE", "STATE_PAUSED", "STATE_TERMINATED", "LANE_OF",
              "ROUTE_LOST_AT", "ROUTE_HOST_DRAINS_AT", "RING_DONE_AT", "RING_TAIL_AT",
              "RING_HEAD_BYTES")


class Region(Protocol):
    """_rg_host.Region: one kernel's region, laid out in place at an address."""

    def push(self, block: int, lane: int, structs: bytes | np.ndarray, /) -> int: ...
    def push_quiet(self, block: int, lane: int, structs: bytes, /) -> int: ...
    def ring(self) -> None: ...
    def push_wait(self, block: int, lane: int, structs: bytes | np.ndarray, timeout_ns: int,
                  nap_ns: int, /) -> int: ...
    def lane_size(self, block: int, lane: int, /) -> int: ...
    def pop(self, max_count: int, timeout_ns: int, poll_ns: int, spin_ns: int,
            clear_notify: bool, /) -> bytes: ...
    def push_pop(self, block: int, lane: int, structs: bytes, max_count: int, spin_ns: int,
                 /) -> bytes | None: ...
    def push_pop_pushed(self) -> bool: ...
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
    def state_write(self, area_offset: int, block: int, data: bytes, /) -> None: ...
    def state_snapshot(self, area_offset: int, block: int, state_size: int,
                       timeout_ns: int, /) -> bytes | None: ...
    def set_link(self, links_offset: int, out: bool, index: int, route_id: int, edge_id: int,
                 device_ptr: int, src_grid: int, dst_grid: int, key_kind: int, key_offset: int, key_size: int,
                 key_data: int, path: str, port: int, scope: int, /) -> None: ...
    def publish_links(self, links_offset: int, /) -> int: ...
    def links_acked(self, links_offset: int, version: int, timeout_ns: int, /) -> bool: ...
    def link_counts(self, links_offset: int, /) -> list[tuple[int, int]]: ...
    def detach(self) -> None: ...


class RegionType(Protocol):
    def __call__(self, address: int, grid: int, block: int, lane_capacity: int,
                 out_capacity: int, in_slot: int, out_slot: int, seed: int, in_lead: int = 0,
                 out_lead: int = 0) -> Region: ...
    def size(self, grid: int, block: int, lane_capacity: int, out_capacity: int, in_slot: int,
             out_slot: int, in_lead: int = 0, out_lead: int = 0) -> int: ...
    def state_area(self, region_size: int, grid: int, state_size: int, /) -> tuple[int, int]: ...
    def links_area(self, region_size: int, grid: int, state_size: int, /) -> tuple[int, int]: ...


class Route(Protocol):
    """_rg_host.Route: the rings of one route between two kernels (rg_route.h)."""

    def queued(self) -> int: ...
    def pending(self) -> int: ...
    def drain(self, max_count: int = ..., /) -> bytes: ...


class RouteType(Protocol):
    def __call__(self, address: int, src_grid: int, dst_grid: int, capacity: int,
                 slot_size: int, lay_out: bool = ...) -> Route: ...
    def size(self, src_grid: int, dst_grid: int, capacity: int, slot_size: int, /) -> int: ...


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


def route_type() -> RouteType:
    return cast(RouteType, native().Route)


def region_type() -> RegionType:
    return cast(RegionType, native().Region)


def region_fault() -> type[RuntimeError]:
    """_rg_host.RegionFault: what a Region raises when its kernel broke the ring protocol
    (wrote impossible indices into its region)."""
    return cast(type[RuntimeError], native().RegionFault)


def region_released() -> type[ValueError]:
    """_rg_host.RegionReleased: what a Region raises once its memory is being released
    (detach): on any call from then on, and from a wait (pop, push_wait, wait_ack,
    links_acked, state_snapshot) that the release ended in another thread."""
    return cast(type[ValueError], native().RegionReleased)


def __getattr__(name: str) -> object:
    if name not in _CONSTANTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = native()
    globals().update((n, getattr(module, n)) for n in _CONSTANTS)  # later reads go straight
    return globals()[name]

