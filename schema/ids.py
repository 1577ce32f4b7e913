"""Message ids: RFC 4122 version-4 UUIDs from a per-process random stream, made in batches.

`uuid4()` makes an `os.urandom` system call and parses its argument for every message, most of
the cost of constructing one. Ids need to be unique, not secret (nothing grants access by a
message id), so they come from a Mersenne Twister seeded with 256 bits of `os.urandom`. They are
made a batch at a time: one `randbytes` call, the version and variant bits set by numpy on the
whole batch, and the UUID objects built in C by msgspec from one msgpack array of 16-byte bins.
A message then takes one from a list (`list.pop`, atomic under the GIL, so threads never share
one). A forked child empties the list and reseeds, as it would otherwise repeat its parent's ids.
"""

from __future__ import annotations

import os
import random
from uuid import UUID

import msgspec
import numpy as np

BATCH = 1024  # ids made at once: ~120 KB of UUIDs, the batch's cost spread over them
_ARRAY = b"\xdc" + BATCH.to_bytes(2, "big")  # msgpack array 16 header of BATCH items
_decode_batch = msgspec.msgpack.Decoder(list[UUID]).decode
_stream = random.Random()

# The ids made and not yet taken. Always this one list (cleared, never rebound), so that a
# compiled constructor may hold its `pop`.
POOL: list[UUID] = []


def _reseed() -> None:
    _stream.seed(int.from_bytes(os.urandom(32), "little"))


def _reset_in_child() -> None:
    POOL.clear()
    _reseed()


_reseed()
os.register_at_fork(after_in_child=_reset_in_child)


def refill() -> UUID:
    """Make a batch of ids into POOL and return one more: what to call when POOL.pop() finds it
    empty."""
    framed = np.empty((BATCH, 18), np.uint8)
    framed[:, 0], framed[:, 1] = 0xC4, 16  # msgpack bin 8 of 16 bytes
    framed[:, 2:] = np.frombuffer(_stream.randbytes(16 * BATCH), np.uint8).reshape(BATCH, 16)
    framed[:, 8] = (framed[:, 8] & 0x0F) | 0x40  # byte 6 of the UUID: version 4
    framed[:, 10] = (framed[:, 10] & 0x3F) | 0x80  # byte 8: the RFC 4122 variant
    POOL.extend(_decode_batch(_ARRAY + framed.tobytes()))
    return POOL.pop()


take = POOL.pop


def new_message_id() -> UUID:
    """A fresh version-4 UUID (what `uuid4()` returns, without its system call)."""
    try:
        return take()
    except IndexError:
        return refill()
