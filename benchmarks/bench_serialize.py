"""Serialize + deserialize of the seed's WorkRequest: ringgen beside a hand-written baseline.

The baseline is what a user would write without ringgen: a dict built from the fields,
`msgpack.packb` with a `default=` hook for UUID, and `Cls(**unpackb(...))` with the UUID
converted back.

    python benchmarks/bench_serialize.py
"""

from __future__ import annotations

import dataclasses
import timeit
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgpack

from ringgen import MaxLen, message


@message
@dataclass
class WorkRequest:
    data: Annotated[list[float], MaxLen(256)]
    operation: Annotated[str, MaxLen(16)] = "sum"


def _default(v: Any) -> Any:
    if isinstance(v, UUID):
        return v.bytes
    raise TypeError(type(v))


def baseline_roundtrip(msg: WorkRequest) -> WorkRequest:
    names = [f.name for f in dataclasses.fields(msg)]
    data = msgpack.packb({n: getattr(msg, n) for n in names}, default=_default)
    fields = msgpack.unpackb(data)
    fields["message_id"] = UUID(bytes=fields["message_id"])
    if fields["correlation_id"] is not None:
        fields["correlation_id"] = UUID(bytes=fields["correlation_id"])
    return WorkRequest(**fields)


def ringgen_roundtrip(msg: WorkRequest) -> WorkRequest:
    return WorkRequest.deserialize(msg.serialize())


def per_message_us(fns: list[Any], msg: WorkRequest, number: int = 20000, rounds: int = 9) -> list[float]:
    """Best of `rounds` for each function, the rounds interleaved so that a noisy neighbour
    slows both sides alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], timeit.timeit(lambda fn=fn: fn(msg), number=number))
    return [b / number * 1e6 for b in best]


def main() -> None:
    msg = WorkRequest(data=[1.0, 2.0, 3.0])
    assert baseline_roundtrip(msg) == msg == ringgen_roundtrip(msg)
    base, ours = per_message_us([baseline_roundtrip, ringgen_roundtrip], msg)
    print(f"baseline  (dict + packb(default=) + Cls(**unpackb)): {base:7.2f} us/message")
    print(f"ringgen   (serialize + deserialize):                  {ours:7.2f} us/message")
    print(f"ratio     (baseline / ringgen, higher is better):     {base / ours:7.2f}x")


if __name__ == "__main__":
    main()
