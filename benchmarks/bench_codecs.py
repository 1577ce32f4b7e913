"""One message <-> its ring slot, the package's compiled C codecs beside the pure-Python struct
engine in the same run (what RINGGEN_NATIVE_CODECS=0 selects), on bench_kernels' messages:
the request and response of the echo kernel and the seed's WorkRequest (a 2,120-byte struct
carrying three floats). Ratios are Python / native: above 1 the native engine is faster.

    python benchmarks/bench_codecs.py
"""

from __future__ import annotations

import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ring import build_echo  # noqa: E402

from ringgen.codecs.structs import StructCodec  # noqa: E402
from ringgen.runtime import native_codecs  # noqa: E402

N = 50_000


def per_call_us(f: Callable[[], Any]) -> float:
    return min(timeit.repeat(f, number=N, repeat=7)) / N * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = build_echo(Path(tmp))
        folder = Path(pkg.__file__).parent
        job, work = pkg.Job(seq=1), pkg.WorkRequest(data=[1.0, 2.0, 3.0])
        cases = [job, job.reply(pkg.Done, seq=1), work, work.reply(pkg.WorkResponse, result=6.0)]
        for msg in cases:
            row(pkg.DTYPES[type(msg).__name__], folder, msg)


def row(dtype: Any, folder: Path, msg: Any) -> None:
    cls = type(msg)
    python = StructCodec(cls, dtype)
    native = StructCodec(cls, dtype, native_codecs.slots_of(folder, cls, dtype))
    slot = python.pack(msg)
    assert native.pack(msg) == slot and native.unpack(slot) == python.unpack(slot) == msg
    pack_py, pack_c = per_call_us(lambda: python.pack(msg)), per_call_us(lambda: native.pack(msg))
    unpack_py, unpack_c = per_call_us(lambda: python.unpack(slot)), per_call_us(lambda: native.unpack(slot))
    print(f"{cls.__name__:13s} {dtype.itemsize:5d} B   pack python {pack_py:5.2f} us  native "
          f"{pack_c:5.2f} us ({pack_py / pack_c:4.1f}x)   unpack python {unpack_py:5.2f} us  "
          f"native {unpack_c:5.2f} us ({unpack_py / unpack_c:4.1f}x)")

if __name__ == "__main__":
    main()
