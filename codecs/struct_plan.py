"""The plan by which the native codec (templates/rg_codec_module.cpp: pack_rows, unpack_rows)
moves a whole batch of messages to and from their C structs in one call: each field's name,
offset and C type, for messages whose every field is a fixed-size scalar or a UUID.

Messages with anything else (text, sequences, nested messages, enums, datetimes, buffers) have
no plan and take the Python engines (codecs/struct_rows.py, struct_columns.py).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ringgen.schema.types import Kind

Plan = tuple[tuple[str, int, int], ...]  # (field name, offset, code) in declaration order

_SCALARS = frozenset({Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.NUMPY})
_NUMERIC = {("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H", ("i", 4): "i",
            ("u", 4): "I", ("i", 8): "q", ("u", 8): "Q", ("f", 4): "f", ("f", 8): "d",
            ("b", 1): "?"}


def _code(name: str, kind: Kind, member: np.dtype) -> str | None:
    """The plan's letter for a field (rg_codec_module.cpp's codes), None if it has none."""
    if name == "correlation_id":
        return "c"  # a UUID or None: the header's flags say which
    if kind is Kind.UUID:
        return "u"
    if kind not in _SCALARS or member.shape:
        return None
    code = _NUMERIC.get((member.kind, member.itemsize))
    return "?" if kind is Kind.BOOL and code == "B" else code


# One plan per (class, dtype), so that every codec of a class passes the same tuple: the native
# module keeps the plan it parsed last by the tuple's identity, and two equal tuples taken in
# turn would have it parse one on every call. Weak: a class that goes takes its plans along.
_PLANS: weakref.WeakKeyDictionary[Any, dict[np.dtype, Plan | None]] = weakref.WeakKeyDictionary()


def batch_plan(cls: Any, dtype: np.dtype) -> Plan | None:
    """The plan of `cls`, laid out as `dtype` (the same tuple on every call); None where a
    field is not of fixed size."""
    plans = _PLANS.setdefault(cls, {})
    if dtype not in plans:
        plans[dtype] = _new_plan(cls, dtype)
    return plans[dtype]


def _new_plan(cls: Any, dtype: np.dtype) -> Plan | None:
    fields = dtype.fields
    assert fields is not None
    plan = []
    for spec in cls._rg_codec().fields:
        member, offset = fields[spec.name][:2]
        code = _code(spec.name, spec.node.kind, member)
        if code is None:
            return None
        plan.append((spec.name, offset, ord(code)))
    return tuple(plan)
