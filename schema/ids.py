"""Message ids: RFC 4122 version-4 UUIDs from a per-process random stream.

`uuid4()` makes an `os.urandom` system call and parses its argument for every message, most of
the cost of constructing one. Ids need to be unique, not secret (nothing grants access by a
message id), so they come from a Mersenne Twister seeded with 256 bits of `os.urandom`: one C
call per id. The stream is reseeded in a forked child, which would otherwise repeat its
parent's ids. `getrandbits` runs under the GIL, so threads draw distinct values.
"""

from __future__ import annotations

import os
import random
from uuid import UUID, SafeUUID

# Version 4 (bits 76..79 = 0100) and the RFC 4122 variant (bits 62..63 = 10).
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_SET = (0x4 << 76) | (0x2 << 62)
_new = object.__new__
_set = object.__setattr__
_SAFE_UNKNOWN = SafeUUID.unknown


def _seeded() -> random.Random:
    return random.Random(int.from_bytes(os.urandom(32), "little"))


_stream = _seeded()
_bits = _stream.getrandbits


def _reseed() -> None:
    global _stream, _bits
    _stream = _seeded()
    _bits = _stream.getrandbits


os.register_at_fork(after_in_child=_reseed)


def new_message_id() -> UUID:
    """A fresh version-4 UUID (what `uuid4()` returns, without its system call)."""
    u = _new(UUID)
    _set(u, "int", (_bits(128) & _CLEAR) | _SET)
    _set(u, "is_safe", _SAFE_UNKNOWN)
    return u
