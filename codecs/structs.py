"""A message as its C struct (the generated numpy dtype's layout): `StructCodec`.

One message packs to the bytes of one struct, many to a numpy struct array. Two engines do the
work, and the codec picks one by count, so no caller weighs them: struct_rows.py (Python's
`struct`, one C call per message) costs least for a few messages; struct_columns.py (numpy,
column by column over a whole batch) has a fixed cost of ~15 us a call and wins from about
VECTOR_MIN messages on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ringgen.codecs import struct_columns
from ringgen.codecs.struct_rows import RowCodec
from ringgen.errors import MessageSerializationError

VECTOR_MIN = 16  # from this many messages on, the vectorised engine is the cheaper
MSGPACK_UNPACK_MIN_VALUES = 32  # struct values from which a native unpack goes through msgpack
concatenate = struct_columns.concatenate


class NativeSlots:
    """One message class's entry in its package's compiled C codecs (runtime/native_codecs.py,
    templates/rg_codec_module.cpp): msgpack -> struct bytes through the generated
    `rg_unpack_<Msg>`, and both header UUIDs of struct bytes made in C."""

    def __init__(self, module: Any, index: int) -> None:
        self.to_struct: Callable[[bytes], bytes] = partial(module.to_struct, index)
        self.to_msgpack: Callable[[bytes | memoryview], bytes] = partial(module.to_msgpack, index)
        self.ids: Callable[[Any], tuple[Any, Any]] = partial(module.ids, index)


class StructCodec:
    """With `native`, one message packs with two C calls (msgspec's serialize, then the
    generated C decoder straight into struct bytes) instead of a Python function per field;
    measured on the seed's WorkRequest (2,120 bytes) about 3x faster. Anything the C codec
    refuses is packed again by the Python engine, whose error names the field."""

    def __init__(self, cls: Any, dtype: np.dtype, native: NativeSlots | None = None) -> None:
        self.cls, self.dtype = cls, dtype
        self.itemsize = dtype.itemsize
        self._rows = RowCodec(cls, dtype, None if native is None else native.ids)
        self._to_struct = None if native is None else native.to_struct
        codec = cls._rg_codec()
        self._serialize, self._deserialize = codec.serialize, codec.deserialize
        # Python's struct.unpack makes a value of every item a struct can hold (all 256 floats
        # of a MaxLen(256) list): for wide structs the C encoder, which writes only the items
        # there, plus the typed msgpack decoder cost less (seed WorkRequest: 4.2 against 13 us).
        self._to_msgpack = (native.to_msgpack if native is not None
                            and self._rows.flat_values >= MSGPACK_UNPACK_MIN_VALUES else None)

    def pack(self, msg: Any) -> bytes:
        """One message -> the bytes of its struct."""
        if self._to_struct is not None:
            try:
                return self._to_struct(self._serialize(msg))
            except (ValueError, MessageSerializationError):
                pass  # a value the C struct cannot hold: the Python engine says which
        return self._rows.pack(msg)

    def unpack(self, data: bytes | memoryview) -> Any:
        """The bytes of one struct -> the message."""
        if self._to_msgpack is not None:
            try:
                return self._deserialize(self._to_msgpack(data))
            except (ValueError, MessageSerializationError):
                pass  # bytes no valid message: the Python engine names what is wrong
        return self._rows.unpack(data)

    def pack_many(self, msgs: Sequence[Any]) -> np.ndarray:
        """Messages -> a struct array (of `dtype`)."""
        if len(msgs) >= VECTOR_MIN:
            return struct_columns.pack(self.cls, self.dtype, msgs)
        return np.frombuffer(bytearray(b"".join(map(self.pack, msgs))), dtype=self.dtype)

    def unpack_many(self, rows: np.ndarray | bytes) -> list[Any]:
        """A struct array, or the bytes of consecutive structs -> the messages."""
        count = len(rows) if isinstance(rows, np.ndarray) else len(rows) // self.itemsize
        if count >= VECTOR_MIN:
            array = rows if isinstance(rows, np.ndarray) else np.frombuffer(rows, dtype=self.dtype)
            return struct_columns.unpack(self.cls, array)
        raw = rows.tobytes() if isinstance(rows, np.ndarray) else rows
        size, unpack = self.itemsize, self._rows.unpack
        return [unpack(raw[i:i + size]) for i in range(0, len(raw), size)]
