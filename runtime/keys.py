"""`@ring_kernel(..., key="field")`: which block (actor instance) a message goes to.

The hash is stable across processes and runs (Python's hash() of a str is not), and defined
on what the C struct holds, so the device side can compute the same one: an integer key is
its 64-bit two's complement value through the splitmix64 finalizer, a str or bytes key the
FNV-1a 64 hash of its bytes (UTF-8 for str). The block is the hash modulo the grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MASK = (1 << 64) - 1
_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _fnv1a(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def key_hash(value: Any) -> int:
    """The stable hash of a key= value, the same in C: `key_hash(v) % grid` is the block that
    every message with key v reaches (from the host and over connections alike)."""
    if isinstance(value, str):
        return _fnv1a(value.encode())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _fnv1a(bytes(value))
    return _mix(int(value) & _MASK)


class KeyRouter:
    """The block of a message of one kernel: from the message object, or from its struct (the
    bytes of one, or a row of the input dtype) as the host's backlog holds it."""

    def __init__(self, key: str, in_dtype: np.dtype, grid: int) -> None:
        self.key = key
        self.in_dtype = in_dtype
        self.grid = grid
        field, offset = in_dtype.fields[key][:2]  # type: ignore[index]
        self._text = field.names is not None  # a bounded str/bytes: {len, data}
        self._offset = offset
        if self._text:  # where its bytes start (numpy's S type would strip trailing NULs)
            length_name, data_name = field.names  # type: ignore[misc]
            self._data = offset + field.fields[data_name][1]  # type: ignore[index]
            self._len = offset + field.fields[length_name][1]  # type: ignore[index]

    def block_of(self, msg: Any) -> int:
        return key_hash(getattr(msg, self.key)) % self.grid

    def block_of_struct(self, entry: bytes | np.ndarray) -> int:
        raw = entry if isinstance(entry, bytes) else entry[:1].tobytes()
        if self._text:
            length = int.from_bytes(raw[self._len:self._len + 4], "little")
            return key_hash(raw[self._data:self._data + length]) % self.grid
        value = np.frombuffer(raw, dtype=self.in_dtype, count=1)[0][self.key]
        return key_hash(int(value)) % self.grid
