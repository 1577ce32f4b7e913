"""The native decoder copies each slot into a per-thread buffer before reading it. Decoding
allocates Python objects, which can run a collection whose finalizers decode again on the same
thread: the inner call must not reuse (or grow, freeing) the buffer the outer call reads."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from conftest import ROOT, import_package

from ringgen.codecs.struct_plan import batch_plan
from ringgen.codecs.structs import StructCodec
from ringgen.runtime import native_codecs


@pytest.fixture
def collect_often() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_a_finalizer_that_decodes_does_not_corrupt_the_decode_it_interrupts(collect_often: None) -> None:
    where = ROOT / "tests/golden/kernels/kernels"
    pkg = import_package(where, "rg_reentry")
    cls, dtype = pkg.Pong, pkg.DTYPES["Pong"]
    slots = native_codecs.slots_of(where, cls, dtype)
    assert slots is not None, "the native codec module must build here (g++)"
    plan = batch_plan(cls, dtype)
    codec = StructCodec(cls, dtype)
    other = codec.pack(cls(seq=-1))
    decoded_inside = []

    class Garbage:  # a reference cycle whose finalizer decodes and leaves more garbage
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            decoded_inside.append(slots.unpack_one(cls, plan, other).seq)
            Garbage()

    sent = [pkg.Ping(seq=i).reply(cls, seq=i) for i in range(2000)]
    raw = codec.pack_many(sent).tobytes()
    Garbage()
    got = slots.unpack_rows(cls, plan, raw)
    one = slots.unpack_one(cls, plan, codec.pack(sent[7]))
    gc.set_threshold(700, 10, 10)
    gc.collect()
    assert decoded_inside and set(decoded_inside) == {-1}  # the finalizers did run, and decoded right
    assert got == sent
    assert one == sent[7]
