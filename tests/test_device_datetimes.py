"""Datetimes through a device kernel come back equal to what was sent: naive stays naive."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import build_package

from ringgen import RingKernelRuntime

SENT = [
    (datetime(2025, 3, 4, 5, 6, 7, 890123), None),
    (datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc), datetime(1999, 12, 31, 23, 59, 59)),
    (datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=5))),
     datetime(2000, 1, 1, tzinfo=timezone.utc)),
]


@pytest.fixture(scope="module")
def stamps_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.stamps", tmp_path_factory.mktemp("stamps") / "gen")


def test_datetimes_come_back_from_a_device_kernel_as_sent(stamps_pkg: Any, backend: str) -> None:
    async def main() -> list[Any]:
        async with RingKernelRuntime(stamps_pkg, backend=backend) as rt:
            await rt.launch("stamp_echo")
            return [await rt.request("stamp_echo", stamps_pkg.Stamp(when=w, maybe=m), timeout=30.0)
                    for w, m in SENT]

    for (when, maybe), back in zip(SENT, asyncio.run(main()), strict=True):
        assert back.when == when and (back.when.tzinfo is None) == (when.tzinfo is None)
        assert back.maybe == maybe
        assert maybe is None or (back.maybe.tzinfo is None) == (maybe.tzinfo is None)


def test_struct_codecs_keep_naive_datetimes(stamps_pkg: Any) -> None:
    """The single-message and the vectorised struct engines alike."""
    from ringgen.codecs.structs import VECTOR_MIN, StructCodec

    codec = StructCodec(stamps_pkg.Stamp, stamps_pkg.DTYPES["Stamp"])
    msgs = [stamps_pkg.Stamp(when=w, maybe=m) for w, m in SENT] * VECTOR_MIN
    assert codec.unpack(codec.pack(msgs[0])) == msgs[0]
    assert codec.unpack(codec.pack(msgs[0])).when.tzinfo is None
    back = codec.unpack_many(codec.pack_many(msgs))
    assert back == msgs and back[0].when.tzinfo is None and back[1].maybe.tzinfo is None
