"""Per-block kernel state on the host side: the state dataclass <-> the bytes of its C struct.

The defaults are written into each block's slot before the kernel starts (rg_state.h); a
snapshot comes back as the same bytes and becomes one object of the state class per block.
State fields are scalars (the reader refuses anything else), so a numpy row holds them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


class StateCodec:
    def __init__(self, cls: type, dtype: np.dtype) -> None:
        self.cls = cls
        self.dtype = dtype
        self.size = dtype.itemsize
        self._fields = [f.name for f in dataclasses.fields(cls)]

    def pack(self, state: Any) -> bytes:
        row = np.zeros(1, dtype=self.dtype)
        for name in self._fields:
            row[name] = getattr(state, name)
        return row.tobytes()

    def defaults(self) -> bytes:
        """What every block starts from: the dataclass's own defaults."""
        return self.pack(self.cls())

    def unpack(self, data: bytes) -> Any:
        row = np.frombuffer(data, dtype=self.dtype, count=1)[0]
        template = self.cls()
        values = {}
        for name in self._fields:
            value = row[name]
            kind = type(getattr(template, name))
            # Python's own types come back as themselves; numpy scalar fields stay numpy.
            values[name] = kind(value) if kind in (bool, int, float) else value
        return self.cls(**values)
