"""The header every message carries, defined once.

In Python three fields, added by @message unless a class declares them itself:
`message_id` (a fresh UUID), `priority` (0..255, higher first, default 128) and
`correlation_id` (the message_id of the request a response answers, or None). In C the header
is inlined at the start of every message struct, with two members Python does not see:
`type_id` (the stable hash of the message's qualified name) and `flags` (bit
FLAG_HAS_CORRELATION: correlation_id is set; bit FLAG_REDELIVERED: a request redelivered
after its kernel failed while handling it). Everything that lays out, writes or reads a
header -- @message, the msgpack codec, the C layout and comments, the struct codecs -- reads
this module; the C side's RG_FLAG_* (rg_platform.h) are checked against it by a
static_assert in every generated messages header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

DEFAULT_PRIORITY = 128
PRIORITY_MIN, PRIORITY_MAX = 0, 255
FLAG_HAS_CORRELATION = 0x01
# A request a supervised kernel (redeliver=True) had taken when it failed, handed to its next
# incarnation: the handler may have seen it before (runtime/supervisor.py).
FLAG_REDELIVERED = 0x02
# A request that arrived over a connection the host forwards (a route between GPUs that cannot
# reach each other): its correlation_id is its conversation's, kept by what answers it, as for
# a request popped from a route (runtime/routes.py).
FLAG_CONVERSATION = 0x04


@dataclass(frozen=True)
class HeaderMember:
    """One member of the C header, at its byte offset."""

    name: str
    c_type: str
    offset: int
    size: int
    struct_code: str  # its format for Python's `struct` module
    kind: str  # the C type kind the layout knows it by (codegen/ir.py CType.kind)
    comment: str  # what the generated header says of it
    python: str | None  # the annotation a class that declares it must use; None: C only


MEMBERS = (
    HeaderMember("message_id", "rg_uuid", 0, 16, "16s", "uuid", "UUID of this message", "UUID"),
    HeaderMember("correlation_id", "rg_uuid", 16, 16, "16s", "correlation",
                 "message_id of the request (flags & RG_FLAG_HAS_CORRELATION)", "UUID | None"),
    HeaderMember("type_id", "uint32_t", 32, 4, "I", "uint", "RG_TYPE_ID_<Msg>", None),
    HeaderMember("priority", "uint8_t", 36, 1, "B", "uint", "0..255, higher first", "int"),
    HeaderMember("flags", "uint8_t", 37, 1, "B", "uint", "RG_FLAG_*", None),
)
SIZE = 40  # the members, then padding to the 8-byte alignment of what follows
MEMBER_NAMES = frozenset(m.name for m in MEMBERS)

# The Python fields, in the order @message adds them, with their types.
FIELDS = ("message_id", "priority", "correlation_id")
ANNOTATIONS: dict[str, Any] = {"message_id": UUID, "priority": int, "correlation_id": UUID | None}
