"""A message as its C struct (the generated numpy dtype's layout): `StructCodec`.

One message packs to the bytes of one struct, many to a numpy struct array. Two engines do the
work, and the codec picks one by count, so no caller weighs them: struct_rows.py (Python's
`struct`, one C call per message) costs least for a few messages; struct_columns.py (numpy,
column by column over a whole batch) has a fixed cost of ~15 us a call and wins from about
VECTOR_MIN messages on. A message of fixed-size fields only (struct_plan.py) has a third, the
package's native codec, which moves a whole batch in one C call with no Python per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ringgen.codecs import struct_columns
from ringgen.codecs.struct_plan import batch_plan
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
        self.pack_rows: Callable[..., bytearray] = partial(module.pack_rows, index)
        self.unpack_rows: Callable[..., list[Any]] = partial(module.unpack_rows, index)
        self.pack_one: Callable[..., bytes] = partial(module.pack_one, index)
        self.unpack_one: Callable[..., Any] = partial(module.unpack_one, index)
        self.correlation_keys: Callable[[Any], list[int]] = partial(module.correlation_keys, index)


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
        # whole batches in one C call each, for messages of fixed-size fields (struct_plan.py)
        plan = None if native is None else batch_plan(cls, dtype)
        self._pack_rows: Callable[[Sequence[Any]], bytearray] | None = None
        self._unpack_rows: Callable[[Any], list[Any]] | None = None
        # and single messages so, in one C call each (a lone request's and send's codecs)
        self._pack_one: Callable[[Any], bytes] | None = None
        self._unpack_one: Callable[[bytes | memoryview], Any] | None = None
        if native is not None and plan is not None:
            self._pack_rows = partial(native.pack_rows, cls, cls.type_id(), plan)
            self._unpack_rows = partial(native.unpack_rows, cls, plan)
            self._pack_one = partial(native.pack_one, cls, cls.type_id(), plan)
            self._unpack_one = partial(native.unpack_one, cls, plan)
        self._correlation_keys = None if native is None else native.correlation_keys
        self._correlation_at = dtype.fields["correlation_id"][1]  # type: ignore[index]

    def pack(self, msg: Any) -> bytes:
        """One message -> the bytes of its struct."""
        if self._pack_one is not None:
            try:
                return self._pack_one(msg)
            except ValueError:
                pass  # not exactly the class, or a value its C member cannot hold: see below
        if self._to_struct is not None:
            try:
                return self._to_struct(self._serialize(msg))
            except (ValueError, MessageSerializationError):
                pass  # a value the C struct cannot hold: the Python engine says which
        return self._rows.pack(msg)

    def unpack(self, data: bytes | memoryview) -> Any:
        """The bytes of one struct -> the message."""
        if self._unpack_one is not None:  # fixed-size fields: any bytes of the size decode
            return self._unpack_one(data)
        if self._to_msgpack is not None:
            try:
                return self._deserialize(self._to_msgpack(data))
            except (ValueError, MessageSerializationError):
                pass  # bytes no valid message: the Python engine names what is wrong
        return self._rows.unpack(data)

    def native_rows_decoder(self) -> Callable[[np.ndarray], list[Any]] | None:
        """unpack_many for struct arrays in one native call, where every row decodes (fixed-size
        fields: any bytes of the size are a message); None where a row may be refused."""
        unpack_rows = self._unpack_rows
        if unpack_rows is None:
            return None
        return lambda rows: unpack_rows(np.ascontiguousarray(rows))

    def pack_native(self, msgs: Sequence[Any]) -> np.ndarray | None:
        """Messages -> a struct array in one native call; None where that cannot be: no native
        codec for the class, a message not exactly of it, or a value its C member cannot
        hold (pack_many's engines then say which)."""
        if self._pack_rows is None:
            return None
        try:
            return np.frombuffer(self._pack_rows(msgs), dtype=self.dtype)
        except ValueError:
            return None

    def pack_many(self, msgs: Sequence[Any]) -> np.ndarray:
        """Messages -> a struct array (of `dtype`)."""
        rows = self.pack_native(msgs)
        if rows is not None:
            return rows
        if len(msgs) >= VECTOR_MIN:
            return struct_columns.pack(self.cls, self.dtype, msgs)
        return np.frombuffer(bytearray(b"".join(map(self.pack, msgs))), dtype=self.dtype)

    def unpack_many(self, rows: np.ndarray | bytes) -> list[Any]:
        """A struct array, or the bytes of consecutive structs -> the messages."""
        if self._unpack_rows is not None:
            return self._unpack_rows(np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else rows)
        count = len(rows) if isinstance(rows, np.ndarray) else len(rows) // self.itemsize
        if count >= VECTOR_MIN:
            array = rows if isinstance(rows, np.ndarray) else np.frombuffer(rows, dtype=self.dtype)
            return struct_columns.unpack(self.cls, array)
        raw = rows.tobytes() if isinstance(rows, np.ndarray) else rows
        size, unpack = self.itemsize, self._rows.unpack
        return [unpack(raw[i:i + size]) for i in range(0, len(raw), size)]

    def correlation_keys(self, raw: bytes) -> list[int]:
        """The correlation_id of each struct in `raw`, as UUID.int (whatever the flags say)."""
        if self._correlation_keys is not None:
            return self._correlation_keys(raw)
        at, size = self._correlation_at, self.itemsize
        return [int.from_bytes(raw[i:i + 16], "big") for i in range(at, len(raw), size)]
