"""What a device kernel's Python function receives as `ctx` when it runs as Python (in
`ringgen verify`, in tests, in a debugger): ctx.fail() and ctx.buffer(ref, dtype), with the
meaning the translated handler gives them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ringgen.errors import ValidationError
from ringgen.schema.kernels import KernelSpec
from ringgen.schema.types import BufferRef


class BufferView:
    """A registered UnifiedBuffer as a 1-D sequence of `dtype`, as a translated handler sees
    it: `len(view)`, `view[i]` (negative from the end; an IndexError past it) giving a Python
    int, float or bool (not a numpy scalar, whose arithmetic is numpy's), and `view[i] = v`
    storing as numpy does (float32 rounds; an int outside the type raises OverflowError)."""

    def __init__(self, array: np.ndarray, dtype: Any) -> None:
        want = np.dtype(dtype)
        if array.dtype != want:
            raise TypeError(f"the buffer holds {array.dtype}, not {want}; give its dtype to "
                            "ctx.buffer(ref, dtype)")
        self.array = array.reshape(-1)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, i: int) -> Any:
        return self.array[i].item()

    def __setitem__(self, i: int, value: Any) -> None:
        self.array[i] = value


class ReferenceContext:
    """The `ctx` a kernel's Python function receives when it runs as Python (spec: the
    kernel's, whose sends= the sends are checked against; `sent` records them in order)."""

    def __init__(self, spec: KernelSpec | None = None) -> None:
        self.failed = False
        self.sent: list[tuple[str, Any]] = []
        self._sends = dict(spec.sends) if spec is not None else {}
        self._kernel_id = spec.kernel_id if spec is not None else "?"

    def fail(self) -> None:
        self.failed = True

    def send(self, target: str, msg: Any) -> None:
        """As the kernel's ctx.send_<target>(msg), checked against its sends=."""
        cls = self._sends.get(target)
        if cls is None or type(msg) is not cls:
            raise TypeError(f"kernel {self._kernel_id!r}: ctx.send({target!r}, "
                            f"{type(msg).__name__}) matches none of its sends= "
                            f"({', '.join(f'{n}: {c.__name__}' for n, c in self._sends.items()) or 'none'})")
        self.sent.append((target, msg))

    def buffer(self, ref: BufferRef, dtype: Any) -> BufferView:
        from ringgen.runtime.buffers import UnifiedBuffer

        try:
            buffer = UnifiedBuffer.of(ref)
        except (KeyError, ValidationError):
            raise ValidationError(f"no UnifiedBuffer has the id {ref!r}") from None
        return BufferView(buffer.host, dtype)
