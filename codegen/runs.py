"""The bytes of a message that a ring copy moves: only those it uses (DESIGN "The data path on
a GPU").

A message's slot is its whole C struct, but most of it is the unused capacity of bounded lists
and strings. A copy over the bus moves, per message, its *fixed runs* (header, scalars, and the
count/len words of lists and strings) and then, once those counts are known, the *used prefix*
of each list's items and each string's data. The slot layout stays the C struct's; only the
copy shrinks. The kernel loop (rg_bus.h) calls the C functions messages.h.j2 renders from this.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringgen.codegen.ir import MessageIR, StructLayout

# Fixed runs closer than this are copied as one (the padding between them rides along): one
# run is at most one more transaction, two runs may cost two.
MERGE_GAP = 16
# Bytes of a list's or string's data moved with its count, unread: a string or list no larger
# moves whole with the fixed runs, a larger one's first items ride along (its used prefix
# starts after them). A small message then needs no second look at a line it has just read.
AHEAD = 32


@dataclass(frozen=True)
class Run:
    """Bytes [offset, offset + size) of the struct, always moved."""

    offset: int
    size: int


@dataclass(frozen=True)
class Prefix:
    """The used items of a bounded list or string: `count` (a C expression on `m->`, clamped
    to `capacity`) items of `item_size` bytes from `offset`, less the first `ahead` of them
    (moved with the fixed runs)."""

    offset: int
    count: str
    item_size: int
    capacity: int
    ahead: int = 0


@dataclass(frozen=True)
class MessageRuns:
    fixed: tuple[Run, ...]
    used: tuple[Prefix, ...]

    def used_bytes(self, counts: dict[str, int]) -> int:
        """What a copy moves for the given counts (C expression -> value): tests and benchmarks."""
        return (sum(r.size for r in self.fixed)
                + sum(max(min(counts.get(p.count, 0), p.capacity) - p.ahead, 0) * p.item_size
                      for p in self.used))


def message_runs(message: MessageIR, structs: dict[str, StructLayout]) -> MessageRuns:
    fixed: list[Run] = []
    used: list[Prefix] = []
    _walk(message.layout, 0, "m->", structs, fixed, used)
    return MessageRuns(tuple(_merge(fixed)), tuple(used))


def _walk(layout: StructLayout, base: int, path: str, structs: dict[str, StructLayout],
          fixed: list[Run], used: list[Prefix]) -> None:
    for m in layout.members:
        if m.padding:
            continue
        off = base + m.offset
        kind = m.ctype.kind if m.ctype is not None else ""
        if kind in ("str", "bytes", "list"):
            assert m.ctype is not None
            inner = structs[m.ctype.c_name]
            word, items = inner.members[0], inner.members[-1]
            item_size = max(items.size // max(m.ctype.bound, 1), 1)
            ahead = min(AHEAD // item_size, m.ctype.bound)
            fixed.append(Run(off + word.offset, items.offset - word.offset + ahead * item_size))
            if ahead < m.ctype.bound:
                used.append(Prefix(off + items.offset, f"{path}{m.name}.{word.name}", item_size,
                                   m.ctype.bound, ahead))
        elif kind == "message":
            assert m.ctype is not None
            _walk(structs[m.ctype.c_name], off, f"{path}{m.name}.", structs, fixed, used)
        else:  # scalars, UUIDs, optionals and fixed arrays: moved whole
            fixed.append(Run(off, m.size))


def _merge(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for r in sorted(runs, key=lambda r: r.offset):
        if out and r.offset - (out[-1].offset + out[-1].size) <= MERGE_GAP:
            last = out[-1]
            out[-1] = Run(last.offset, max(last.offset + last.size, r.offset + r.size) - last.offset)
        else:
            out.append(r)
    return out
