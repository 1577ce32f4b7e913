"""Messages <-> C structs in Python: the vectorised numpy path and the single-message struct
path give the same bytes, round-trip every type, and refuse what the C layout cannot hold."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import msgpack
import numpy as np
import pytest
from conftest import ROOT, import_package
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringgen import MessageSerializationError
from ringgen.codecs import struct_columns as structs
from ringgen.codecs import structs as struct_codecs
from ringgen.codecs.struct_plan import batch_plan
from ringgen.codecs.structs import VECTOR_MIN, StructCodec
from ringgen.runtime import native_codecs
from ringgen.toolchain.compile import compile_codec_module
from ringgen.verify import message_strategy

CASES = ["everything", "widths", "seed_messages", "kernels"]


def _package(case: str) -> Any:
    return import_package(ROOT / "tests" / "golden" / case / case, f"rg_structs_{case}")


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_struct_codec_equals_numpy_and_round_trips(case: str, data: st.DataObject) -> None:
    pkg = _package(case)
    for name, dtype in pkg.DTYPES.items():
        cls = pkg.package.classes[name]
        msgs = data.draw(st.lists(message_strategy(cls, for_codecs=True), min_size=1, max_size=3), label=name)
        rows = structs.pack(cls, dtype, msgs)
        codec = StructCodec(cls, dtype)
        assert b"".join(codec.pack(m) for m in msgs) == rows.tobytes()
        assert structs.unpack(cls, rows) == msgs
        assert [codec.unpack(rows[i:i + 1].tobytes()) for i in range(len(msgs))] == msgs


def test_values_the_c_type_cannot_hold_are_refused() -> None:
    pkg = _package("kernels")
    # The constructor refuses it (test_arrays.py); msgpack from elsewhere still carries it.
    too_big = pkg.Ping.deserialize(msgpack.packb({"seq": 2**63}))
    with pytest.raises(MessageSerializationError, match=r"Ping\.seq"):
        structs.pack(pkg.Ping, pkg.DTYPES["Ping"], [too_big])
    with pytest.raises(MessageSerializationError, match="does not fit its C type"):
        StructCodec(pkg.Ping, pkg.DTYPES["Ping"]).pack(too_big)


def test_struct_bytes_from_a_device_are_checked() -> None:
    pkg = _package("kernels")
    rows = structs.pack(pkg.Numbers, pkg.DTYPES["Numbers"], [pkg.Numbers(values=[1, 2])])
    rows["values"]["count"] = 101  # past MaxLen(100): a buggy handler, say
    with pytest.raises(MessageSerializationError, match=r"Numbers\.values: a count 101 exceeds"):
        structs.unpack(pkg.Numbers, rows)


def test_concatenate_keeps_the_c_layout() -> None:
    pkg = _package("kernels")
    dtype = pkg.DTYPES["Pong"]
    parts = [np.zeros(2, dtype=dtype), np.ones(3, dtype=dtype)]
    joined = structs.concatenate(parts)
    assert joined.dtype == dtype and joined.dtype.itemsize == dtype.itemsize and len(joined) == 5


@pytest.mark.parametrize("n", [0, 1, VECTOR_MIN - 1, VECTOR_MIN, 3 * VECTOR_MIN])
def test_struct_codec_gives_the_same_whichever_engine_the_count_picks(n: int) -> None:
    pkg = _package("kernels")
    codec = StructCodec(pkg.Ping, pkg.DTYPES["Ping"])
    msgs = [pkg.Ping(seq=i, priority=i % 256) for i in range(n)]
    rows = codec.pack_many(msgs)
    assert rows.dtype == pkg.DTYPES["Ping"]
    assert rows.tobytes() == b"".join(codec.pack(m) for m in msgs)
    assert codec.unpack_many(rows) == msgs == codec.unpack_many(rows.tobytes())


# --- the native engine: the package's C codecs compiled into a host module ------------------


def _native_codecs(case: str, cls: Any, dtype: np.dtype) -> list[StructCodec]:
    """Native codecs of `cls`, one per unpack route (through msgpack, and struct.unpack with
    the header ids made in C), whatever width picks between them in use."""
    slots = native_codecs.slots_of(ROOT / "tests" / "golden" / case / case, cls, dtype)
    assert slots is not None, f"no native codec for {cls.__name__}"
    out = []
    for threshold in (0, 10**9):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(struct_codecs, "MSGPACK_UNPACK_MIN_VALUES", threshold)
            out.append(StructCodec(cls, dtype, slots))
    return out


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_native_codec_writes_and_reads_the_python_struct_bytes(case: str, data: st.DataObject) -> None:
    pkg = _package(case)
    for name, dtype in pkg.DTYPES.items():
        cls = pkg.package.classes[name]
        python = StructCodec(cls, dtype)
        natives = _native_codecs(case, cls, dtype)
        for msg in data.draw(st.lists(message_strategy(cls, for_codecs=True), min_size=1, max_size=3),
                             label=name):
            slot = python.pack(msg)
            for native in natives:
                assert native.pack(msg) == slot
                assert native.unpack(slot) == msg


def test_native_codec_errors_are_the_python_engines() -> None:
    pkg = _package("kernels")
    too_big = pkg.Ping.deserialize(msgpack.packb({"seq": 2**63}))
    for native in _native_codecs("kernels", pkg.Ping, pkg.DTYPES["Ping"]):
        with pytest.raises(MessageSerializationError, match="does not fit its C type"):
            native.pack(too_big)
    rows = structs.pack(pkg.Numbers, pkg.DTYPES["Numbers"], [pkg.Numbers(values=[1, 2])])
    rows["values"]["count"] = 101  # past MaxLen(100): a buggy handler, say
    for native in _native_codecs("kernels", pkg.Numbers, pkg.DTYPES["Numbers"]):
        with pytest.raises(MessageSerializationError, match="a count 101 exceeds"):
            native.unpack(rows.tobytes())


def test_native_codec_module_is_a_checked_cache_artifact() -> None:
    folder = ROOT / "tests" / "golden" / "kernels" / "kernels"
    first, again = compile_codec_module(folder), compile_codec_module(folder)
    assert first is not None and again is not None and again.cached and again.path == first.path
    assert first.path.stat().st_mode & 0o777 == 0o700
    assert compile_codec_module(ROOT / "tests") is None  # no codec header: no module


# --- the native batch engine: a whole batch of fixed-size messages in one C call -------------


def _planned(case: str) -> list[tuple[Any, np.dtype, StructCodec]]:
    """The classes of `case` that the native codec packs a batch at a time, with their codec."""
    pkg = _package(case)
    out = []
    for name, dtype in pkg.DTYPES.items():
        cls = pkg.package.classes[name]
        if batch_plan(cls, dtype) is not None:
            out.append((cls, dtype, _native_codecs(case, cls, dtype)[0]))
    return out


def test_batch_plans_cover_the_fixed_size_messages_only() -> None:
    kernels = {cls.__name__ for cls, _, _ in _planned("kernels")}
    assert {"Ping", "Pong", "Stats"} <= kernels and "Numbers" not in kernels  # a list: none
    assert [cls.__name__ for cls, _, _ in _planned("widths")] == ["Widths"]


@pytest.mark.parametrize("case", ["widths", "kernels", "everything"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_native_batches_write_and_read_the_python_struct_bytes(case: str, data: st.DataObject) -> None:
    for cls, dtype, native in _planned(case):
        python = StructCodec(cls, dtype)
        msgs = data.draw(st.lists(message_strategy(cls, for_codecs=True), min_size=0, max_size=40),
                         label=cls.__name__)
        rows = native.pack_native(msgs)
        assert rows is not None and rows.dtype == dtype
        assert rows.tobytes() == b"".join(python.pack(m) for m in msgs)
        assert native.unpack_many(rows.tobytes()) == msgs == native.unpack_many(rows)
        keys = [m.correlation_id.int if m.correlation_id is not None else 0 for m in msgs]
        assert native.correlation_keys(rows.tobytes()) == keys == python.correlation_keys(rows.tobytes())


def test_native_batches_leave_what_they_cannot_pack_to_the_python_engines() -> None:
    pkg = _package("kernels")
    dtype = pkg.DTYPES["Ping"]
    native = _native_codecs("kernels", pkg.Ping, dtype)[0]
    pings = [pkg.Ping(seq=i) for i in range(VECTOR_MIN)]
    too_big = pkg.Ping.deserialize(msgpack.packb({"seq": 2**63}))
    assert native.pack_native([*pings, too_big]) is None
    with pytest.raises(MessageSerializationError, match=r"Ping\.seq"):
        native.pack_many([*pings, too_big])
    assert native.pack_native([*pings, pkg.Pong(seq=1)]) is None  # not exactly a Ping
    as_float = pkg.Ping(seq=1)
    as_float.__dict__["seq"] = 1.5  # past the constructor: struct refuses a float for an int
    assert native.pack_native([as_float]) is None


def test_every_codec_of_a_class_passes_the_native_module_the_same_plan() -> None:
    """The native module keeps the plan it parsed last by the tuple's identity: two codecs of
    one class once passed two equal tuples in turn, and each call parsed its plan again."""
    pkg = _package("kernels")
    first, second = _native_codecs("kernels", pkg.Ping, pkg.DTYPES["Ping"])
    assert first._pack_rows.args[2] is second._pack_rows.args[2]  # type: ignore[union-attr]
    assert batch_plan(pkg.Ping, pkg.DTYPES["Ping"]) is batch_plan(pkg.Ping, pkg.DTYPES["Ping"])


def test_a_plan_replaced_during_a_batch_does_not_change_the_batch() -> None:
    """pack_rows walks the fields of the plan it was given while Python code runs (a field's
    __index__ here; a finalizer could do the same), which may pack the same message by another
    plan and so replace the module's cached one. The batch once went on by the other plan
    (over the freed fields of its own): here its second message lost its `seq`."""
    pkg = _package("kernels")
    cls, dtype = pkg.Ping, pkg.DTYPES["Ping"]
    slots = native_codecs.slots_of(ROOT / "tests" / "golden" / "kernels" / "kernels", cls, dtype)
    assert slots is not None
    plan = batch_plan(cls, dtype)
    assert plan is not None
    without_seq = tuple(f for f in plan if f[0] != "seq")
    assert len(without_seq) == len(plan) - 1

    class Reentrant:
        def __index__(self) -> int:
            slots.pack_one(cls, cls.type_id(), without_seq, cls(seq=1))
            return 5

    first = cls(seq=0)
    first.__dict__["seq"] = Reentrant()  # past the constructor, as a numpy integer would be
    rows = slots.pack_rows(cls, cls.type_id(), plan, [first, cls(seq=7)])
    assert np.frombuffer(rows, dtype)["seq"].tolist() == [5, 7]


def test_native_batches_make_messages_the_collector_tracks() -> None:
    """unpack_rows makes its messages untracked and tracks them once the batch is made (the
    collections its allocations set off would otherwise promote them all); none stays
    untracked, or a cycle through one would never be collected."""
    pkg = _package("kernels")
    native = _native_codecs("kernels", pkg.Pong, pkg.DTYPES["Pong"])[0]
    sent = [pkg.Pong(seq=i) for i in range(3000)]  # past gen 0's threshold, whatever it is
    sent[::2] = [pkg.Ping(seq=i).reply(pkg.Pong, seq=i) for i in range(0, 3000, 2)]
    rows = native.pack_many(sent)
    assert rows.tobytes() == b"".join(StructCodec(pkg.Pong, pkg.DTYPES["Pong"]).pack(m) for m in sent)
    got = native.unpack_many(rows)
    assert got == sent and all(gc.is_tracked(m) for m in got)
    assert got[0].correlation_id is not None and got[1].correlation_id is None
    assert {m.message_id for m in got} == {m.message_id for m in sent}
    cycle = got[0]
    object.__setattr__(cycle, "seq", [cycle])  # messages are frozen: past that
    ref = weakref.ref(cycle)
    del cycle, got
    gc.collect()
    assert ref() is None
