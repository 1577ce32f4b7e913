"""A message as its C struct (the generated numpy dtype's layout): `StructCodec`.

One message packs to the bytes of one struct, many to a numpy struct array. Two engines do the
work, and the codec picks one by count, so no caller weighs them: struct_rows.py (Python's
`struct`, one C call per message) costs least for a few messages; struct_columns.py (numpy,
column by column over a whole batch) has a fixed cost of ~15 us a call and wins from about
VECTOR_MIN messages on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ringgen.codecs import struct_columns
from ringgen.codecs.struct_rows import RowCodec

VECTOR_MIN = 16  # from this many messages on, the vectorised engine is the cheaper
concatenate = struct_columns.concatenate


class StructCodec:
    def __init__(self, cls: Any, dtype: np.dtype) -> None:
        self.cls, self.dtype = cls, dtype
        self.itemsize = dtype.itemsize
        self._rows = RowCodec(cls, dtype)

    def pack(self, msg: Any) -> bytes:
        """One message -> the bytes of its struct."""
        return self._rows.pack(msg)

    def unpack(self, data: bytes | memoryview) -> Any:
        """The bytes of one struct -> the message."""
        return self._rows.unpack(data)

    def pack_many(self, msgs: Sequence[Any]) -> np.ndarray:
        """Messages -> a struct array (of `dtype`)."""
        if len(msgs) >= VECTOR_MIN:
            return struct_columns.pack(self.cls, self.dtype, msgs)
        return np.frombuffer(bytearray(b"".join(map(self._rows.pack, msgs))), dtype=self.dtype)

    def unpack_many(self, rows: np.ndarray | bytes) -> list[Any]:
        """A struct array, or the bytes of consecutive structs -> the messages."""
        count = len(rows) if isinstance(rows, np.ndarray) else len(rows) // self.itemsize
        if count >= VECTOR_MIN:
            array = rows if isinstance(rows, np.ndarray) else np.frombuffer(rows, dtype=self.dtype)
            return struct_columns.unpack(self.cls, array)
        raw = rows.tobytes() if isinstance(rows, np.ndarray) else rows
        size, unpack = self.itemsize, self._rows.unpack
        return [unpack(raw[i:i + size]) for i in range(0, len(raw), size)]
