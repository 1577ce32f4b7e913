"""Hypothesis strategies derived from a @message class's own field types and bounds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ringgen import BufferRef
from ringgen.codecs.msgpack import read_fields
from ringgen.schema.types import Kind, TypeNode

# What an int64 ns since the epoch can hold (the device's datetime), at Python's microseconds.
DEVICE_DATETIMES = st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2261, 12, 31),
                                timezones=st.just(timezone.utc))


def _bounded_text(n: int) -> st.SearchStrategy[str]:
    return st.text(max_size=n).map(lambda s: s.encode()[:n].decode("utf-8", "ignore"))


def value_strategy(node: TypeNode) -> st.SearchStrategy[Any]:
    k = node.kind
    if k is Kind.INT:
        return st.integers(-(2**63), 2**63 - 1)
    if k is Kind.FLOAT:
        return st.floats(allow_nan=False)
    if k is Kind.BOOL:
        return st.booleans()
    if k is Kind.NUMPY:
        dt = np.dtype(node.py)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            return st.integers(int(info.min), int(info.max))
        if dt.kind == "f":
            return st.floats(width=dt.itemsize * 8, allow_nan=False)
        return st.booleans()
    if k is Kind.STR:
        return _bounded_text(node.max_len or 16)
    if k is Kind.BYTES:
        return st.binary(max_size=node.max_len or 16)
    if k is Kind.UUID:
        return st.uuids()
    if k is Kind.DATETIME:
        return DEVICE_DATETIMES
    if k is Kind.ENUM:
        return st.sampled_from(list(node.py))
    if k is Kind.BUFFER_REF:
        return st.builds(BufferRef, st.integers(0, 2**64 - 1))
    if k is Kind.OPTIONAL:
        return st.none() | value_strategy(node.args[0])
    if k is Kind.LIST:
        return st.lists(value_strategy(node.args[0]), max_size=node.max_len or 4)
    if k is Kind.TUPLE:
        return st.lists(value_strategy(node.args[0]), max_size=node.max_len or 4).map(tuple)
    if k is Kind.FIXED_TUPLE:
        return st.tuples(*(value_strategy(a) for a in node.args))
    if k is Kind.MESSAGE:
        return message_strategy(node.py)
    raise NotImplementedError(f"no strategy for {node.describe()}")


def message_strategy(cls: type) -> st.SearchStrategy[Any]:
    fields = {}
    for spec in read_fields(cls):
        if spec.name == "priority":
            fields[spec.name] = st.integers(0, 255)
        else:
            fields[spec.name] = value_strategy(spec.node)
    return st.builds(cls, **fields)
