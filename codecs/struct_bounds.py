"""Struct rows from a caller (send_array), checked as a message object is checked when it is
made: every count and length within its MaxLen bound. A kernel trusts these as array bounds,
so a row with a count over its bound would have it read (and write) past its structs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ringgen.errors import ValidationError
from ringgen.schema.types import Kind, TypeNode

_BOUNDED = (Kind.STR, Kind.BYTES, Kind.LIST, Kind.TUPLE)


def check_rows(cls: Any, dtype: np.dtype, rows: object) -> np.ndarray:
    """`rows` as a 1-D array of `dtype` (the C structs of `cls`) whose every count and length
    fits its bound; ValidationError naming the first row and field that does not."""
    name = cls.__name__
    if not isinstance(rows, np.ndarray):
        raise ValidationError(f"send_array takes a numpy array of {name} structs (dtype "
                              f"DTYPES[{name!r}]), not {type(rows).__name__}; use send_many for "
                              "message objects")
    if rows.dtype != dtype:
        raise ValidationError(f"send_array takes arrays of dtype DTYPES[{name!r}], not "
                              f"{rows.dtype}; make the array with that dtype")
    if rows.ndim != 1:
        raise ValidationError(f"send_array takes a 1-D array of {name} structs, one per "
                              f"message, not an array of shape {rows.shape}; reshape(-1) it")
    _check_message(cls.__qualname__, cls, rows, np.arange(len(rows)))
    return rows


def _check_message(path: str, cls: Any, col: np.ndarray, rows: np.ndarray) -> None:
    for spec in cls._rg_codec().fields:
        if spec.name != "correlation_id" and _needs_check(spec.node):
            _check(f"{path}.{spec.name}", spec.node, col[spec.name], rows)


def _needs_check(node: TypeNode) -> bool:
    if node.kind in _BOUNDED:
        return True
    if node.kind is Kind.MESSAGE:
        return any(_needs_check(s.node) for s in node.py._rg_codec().fields)
    return node.kind in (Kind.OPTIONAL, Kind.FIXED_TUPLE) and _needs_check(node.args[0])


def _check(path: str, node: TypeNode, col: np.ndarray, rows: np.ndarray) -> None:
    """col: one field of the rows `rows` (their numbers in the caller's array), 1-D."""
    k = node.kind
    if not len(col):
        return
    if k in (Kind.STR, Kind.BYTES):
        data = col["data"]
        width = data.dtype.itemsize if k is Kind.STR else data.shape[-1]
        _within(path, "length", col["len"], width, rows)
    elif k is Kind.MESSAGE:
        _check_message(path, node.py, col, rows)
    elif k is Kind.OPTIONAL:
        present = col["present"] != 0
        _check(path, node.args[0], col["value"][present], rows[present])
    elif k is Kind.FIXED_TUPLE:
        items = col["items"]
        _check(f"{path}[]", node.args[0], items.reshape(-1),
               np.repeat(rows, items.shape[1]))
    elif k in (Kind.LIST, Kind.TUPLE):
        items = col["items"]
        counts = col["count"].astype(np.int64)
        _within(path, "count", counts, items.shape[1], rows)
        if _needs_check(node.args[0]):
            at = np.repeat(np.arange(len(counts)), counts)
            idx = np.arange(len(at)) - np.repeat(np.cumsum(counts) - counts, counts)
            _check(f"{path}[]", node.args[0], items[at, idx], rows[at])


def _within(path: str, what: str, values: np.ndarray, bound: int, rows: np.ndarray) -> None:
    over = np.flatnonzero(values > bound)
    if len(over):
        i = int(over[0])
        raise ValidationError(f"{path}: row {int(rows[i])} has a {what} of {int(values[i])}, over "
                              f"the bound MaxLen({bound}); fix the row (nothing was enqueued)")
