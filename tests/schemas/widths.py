"""Every numpy scalar width, in an order that forces padding between each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import message


@message
@dataclass
class Widths:
    a: np.uint8 = 0
    b: np.int64 = 0
    c: np.int8 = 0
    d: np.uint32 = 0
    e: np.int16 = 0
    f: np.float64 = 0.0
    g: np.uint16 = 0
    h: np.float32 = 0.0
    i: np.bool_ = False
    j: np.int32 = 0
    k: np.uint64 = 0
