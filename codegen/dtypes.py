"""Derived figures of the IR: numpy dtypes (same offsets as the C structs) and the largest
msgpack size of each message."""

from __future__ import annotations

from typing import Any

from ringgen.codegen.ir import CType, MessageIR, PackageIR, StructLayout

_RAW_NUMPY = {"uint32_t": "<u4", "uint8_t": "u1"}


def dtype_spec(pkg: PackageIR, struct: StructLayout) -> dict[str, Any]:
    """The numpy dtype of a struct as np.dtype() takes it: names, formats, offsets, itemsize.
    Padding members are left out; numpy keeps the gaps from the offsets."""
    by_name = {s.c_name: s for s in pkg.structs}
    names, formats, offsets = [], [], []
    for m in struct.fields:
        fmt: Any
        if m.ctype is None:  # a raw member of a container or of the header
            fmt = f"S{m.array}" if m.c_type == "char" else _RAW_NUMPY[m.c_type]
            if m.array and m.c_type != "char":
                fmt = (fmt, (m.array,))
        else:
            fmt = _element_format(pkg, by_name, m.ctype)
            if m.array:
                fmt = (fmt, (m.array,))
        names.append(m.name)
        formats.append(fmt)
        offsets.append(m.offset)
    return {"names": names, "formats": formats, "offsets": offsets, "itemsize": struct.size}


def _element_format(pkg: PackageIR, by_name: dict[str, StructLayout], t: CType) -> Any:
    if t.kind in ("uuid", "correlation"):
        return ("u1", (16,))
    if t.kind == "datetime":  # rg_datetime
        return {"names": ["ns", "naive"], "formats": ["<i8", "u1"], "offsets": [0, 8], "itemsize": 16}
    if t.c_name in by_name:
        return dtype_spec(pkg, by_name[t.c_name])
    return t.numpy


def _max_size(pkg: PackageIR, t: CType) -> int:
    """Upper bound of the msgpack bytes of one value of `t`."""
    k = t.kind
    if k in ("int", "uint", "enum", "buffer", "float", "datetime"):
        return {"float": 1 + t.bits // 8, "datetime": 2 + 32}.get(k, 9)
    if k == "bool":
        return 1
    if k in ("uuid", "correlation"):
        return 18
    if k in ("str", "bytes"):
        return 5 + t.bound
    if k in ("list", "array"):
        return 5 + t.bound * _max_size(pkg, t.element)
    if k == "optional":
        return max(1, _max_size(pkg, t.element))
    return max_packed_size(pkg, pkg.message(t.c_name))


def max_packed_size(pkg: PackageIR, m: MessageIR) -> int:
    return 5 + sum(5 + len(f.name.encode()) + _max_size(pkg, f.ctype) for f in m.fields)
