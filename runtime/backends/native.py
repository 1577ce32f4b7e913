"""ctypes bindings of librg_host (templates/rg_host.cpp): the host side of the rings.

ctypes releases the GIL for the length of each call, so a thread blocked in `pop` does not
stop the event loop or the other kernels' threads.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from ringgen.codegen.compile import compile_host_library

U32, U64, I64, VP = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64, ctypes.c_void_p

STATE_LAUNCHED, STATE_ACTIVE, STATE_PAUSED, STATE_TERMINATED = 0, 1, 2, 3
CMD_ACTIVATE, CMD_DEACTIVATE, CMD_TERMINATE = 1, 2, 3
LANES = 5
STATUS_FIELDS = ("state", "processed", "emitted", "errors", "heartbeat")


@functools.lru_cache(maxsize=2)
def host_library(sanitize_thread: bool = False) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(compile_host_library(sanitize_thread).path))
    signatures = {
        "rg_host_region_size": (U64, [U32, U32, U32, U32, U32, U32]),
        "rg_host_region_init": (U64, [VP, U32, U32, U32, U32, U32, U32, U64]),
        "rg_host_push": (U64, [VP, U32, U32, VP, U64]),
        "rg_host_push_wait": (U64, [VP, U32, U32, VP, U64, I64, I64]),
        "rg_host_lane_size": (U64, [VP, U32, U32]),
        "rg_host_pop": (U64, [VP, VP, U64, I64, ctypes.POINTER(U32), I64]),
        "rg_host_command": (U64, [VP, U32]),
        "rg_host_wait_ack": (ctypes.c_int, [VP, U64, I64]),
        "rg_host_status": (None, [VP, ctypes.POINTER(U64)]),
        "rg_host_arm": (None, [VP, I64, ctypes.c_int32]),
        "rg_host_set_spin": (None, [VP, U64]),
        "rg_host_set_buffer": (ctypes.c_int, [VP, U32, U64, U64, U64, U32, U32, ctypes.c_char_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def lane_of(priority: int) -> int:
    """The seed's priority classes: 0-63, 64-127, 128, 129-191, 192-255 (lane 0 lowest)."""
    return 0 if priority < 64 else 1 if priority < 128 else 2 if priority == 128 else \
        3 if priority < 192 else 4


LANE_OF = np.array([lane_of(p) for p in range(256)], dtype=np.uint8)
