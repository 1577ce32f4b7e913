"""numpy without traps: new_array makes rows as the constructor makes objects, send_array takes
rows of an equivalent but repacked dtype (or names what differs), and a value that a device
message's C struct cannot hold is refused where the message is made, naming the field."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any

import numpy as np
import pytest
from conftest import build_package

from ringgen import MaxLen, RingKernelRuntime, ValidationError, message
from ringgen.codecs import struct_columns as structs

DEFAULTS = '''
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from ringgen import MaxLen, message, ring_kernel

class Level(enum.IntEnum):
    LOW = 1
    HIGH = 9

@message
@dataclass
class Order:
    qty: int
    when: datetime
    op: Annotated[str, MaxLen(8)] = "sum"
    scale: float = 1.5
    level: Level = Level.HIGH
    limit: int | None = None
    steps: Annotated[list[int], MaxLen(4)] = field(default_factory=lambda: [3, 4])
    priority: int = 200

@ring_kernel(kernel_id="orders", input=Order, output=Order, cuda="")
def orders(order: Order) -> Order: ...
'''


@pytest.fixture(scope="module")
def orders_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("orders")
    (folder / "orders.py").write_text(DEFAULTS)
    return build_package(str(folder / "orders.py"), folder / "gen")


def test_new_array_rows_are_what_the_constructor_makes(orders_pkg: Any) -> None:
    rows = orders_pkg.new_array("Order", 3)
    assert rows.dtype == orders_pkg.DTYPES["Order"] and len(rows) == 3
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    made = orders_pkg.Order(qty=0, when=epoch)
    back = structs.unpack(orders_pkg.Order, rows)
    ids = [m.message_id for m in back]
    assert len(set(ids)) == 3 and all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    for m in back:
        assert (m.qty, m.op, m.scale, m.level, m.limit, m.steps, m.priority, m.correlation_id) == (
            made.qty, made.op, made.scale, made.level, made.limit, made.steps, 200, None)
        assert m.when == epoch
    assert orders_pkg.new_array(orders_pkg.Order, 0).shape == (0,)
    with pytest.raises(ValidationError, match="no C struct for 'Nope'; new_array takes one of Order"):
        orders_pkg.new_array("Nope", 1)


def test_new_array_round_trip_through_a_kernel(kernels_pkg: Any) -> None:
    rows = kernels_pkg.new_array("Ping", 50)
    rows["seq"] = np.arange(50)
    # np.concatenate drops the struct's padding: an equivalent dtype in another layout
    packed = np.concatenate([rows[:20], rows[20:]])
    assert packed.dtype != rows.dtype

    async def main() -> np.ndarray:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            assert await rt.send_array("echo", packed) == 50
            got: list[np.ndarray] = []
            while sum(map(len, got)) < 50:
                got.append(await rt.receive_array("echo", 50, timeout=10.0))
            return structs.concatenate(got)

    out = asyncio.run(main())
    by_seq = {int(r["seq"]): r for r in out}
    assert sorted(by_seq) == list(range(50))
    for row in rows:
        assert bytes(by_seq[int(row["seq"])]["correlation_id"]) == bytes(row["message_id"])


def test_send_many_and_receive_many_in_native_batches(kernels_pkg: Any) -> None:
    """Pings (fixed-size fields: the native codec packs and unpacks whole batches) round trip
    with their ids and priorities; a batch holding one message of another class is refused
    whole, before anything is enqueued."""
    pings = [kernels_pkg.Ping(seq=i, priority=(7 * i) % 256) for i in range(200)]
    by_id = {p.message_id: p for p in pings}

    async def main() -> tuple[list[Any], int]:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            with pytest.raises(TypeError, match="takes Ping messages, not Pong"):
                await rt.send_many("echo", [*pings[:20], kernels_pkg.Pong(seq=1)])
            refused_sent = rt.telemetry("echo").sent
            assert await rt.send_many("echo", pings) == len(pings)
            got: list[Any] = []
            while len(got) < len(pings):
                got += await rt.receive_many("echo", len(pings), timeout=10.0)
            return got, refused_sent

    got, refused_sent = asyncio.run(main())
    assert refused_sent == 0
    assert sorted(r.seq for r in got) == list(range(200))
    for r in got:
        assert isinstance(r, kernels_pkg.Pong) and by_id[r.correlation_id].seq == r.seq
        assert r.priority == by_id[r.correlation_id].priority


def test_send_array_names_what_differs(kernels_pkg: Any) -> None:
    rows = kernels_pkg.new_array("Ping", 2)
    wrong_type = np.zeros(2, dtype=[(n, "<f8" if n == "seq" else rows.dtype[n])
                                     for n in rows.dtype.names])
    wrong_names = rows[["message_id", "priority", "seq"]]

    async def send(arr: np.ndarray) -> None:
        async with RingKernelRuntime(kernels_pkg, backend="cpu") as rt:
            await rt.launch("echo")
            await rt.send_array("echo", arr)

    with pytest.raises(ValidationError, match=r"dtype differs: seq is float64, not int64$"):
        asyncio.run(send(wrong_type))
    with pytest.raises(ValidationError, match=r"it lacks correlation_id, type_id, flags, mode"):
        asyncio.run(send(wrong_names))
    with pytest.raises(ValidationError, match=r"pkg\.new_array\('Ping', n\) makes them"):
        asyncio.run(send(np.zeros(2)))


def test_values_a_c_struct_cannot_hold_fail_at_construction(orders_pkg: Any) -> None:
    now = datetime(2024, 1, 1)
    with pytest.raises(ValidationError, match=r"Order\.qty: .*does not fit the int64_t of its C struct"):
        orders_pkg.Order(qty=2**63, when=now)
    with pytest.raises(ValidationError, match=r"Order\.steps: .*does not fit the int64_t"):
        orders_pkg.Order(qty=1, when=now, steps=[1, 2**63])
    with pytest.raises(ValidationError, match=r"Order\.when: 2300-01-01T00:00:00 does not fit the int64 "
                                              r"nanoseconds.*from 1677-09-21 to 2262-04-11"):
        orders_pkg.Order(qty=1, when=datetime(2300, 1, 1))
    edge = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)
    made = orders_pkg.Order(qty=2**63 - 1, when=edge, limit=-(2**63))
    assert structs.unpack(orders_pkg.Order, structs.pack(
        orders_pkg.Order, orders_pkg.DTYPES["Order"], [made]))[0] == made


def test_host_messages_keep_msgpacks_range() -> None:
    @message
    @dataclass
    class Wide:  # laid out by no package: only msgpack's limits apply
        n: int
        label: Annotated[str, MaxLen(4)] = ""

    assert Wide.deserialize(Wide(n=2**64 - 1).serialize()).n == 2**64 - 1
