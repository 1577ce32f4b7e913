"""The bytes of a message that a ring copy moves: only those it uses (DESIGN "The data path on
a GPU").

A message's slot is its whole C struct, but most of it is the unused capacity of bounded lists
and strings. A copy over the bus moves, per message, its *fixed runs* (header, scalars, and the
count/len words of lists and strings) and the *used prefix* of each list's items and each
string's data, in two steps: first the fixed runs up to the last that holds a count a prefix
needs, then, once those counts are known, the prefixes and the fixed runs after them, in the
order of their offsets, so that a prefix and the fixed run that follows it on the same line
move as one (rg_bus.h: rg_coalesce). The slot layout stays the C struct's; only the copy
shrinks. The kernel loop calls the C functions messages.h.j2 renders from this.
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
# Bytes of one bus transaction at most (rg_bus.h: RG_BUS_LINE).
BUS_LINE = 128


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
    count_offset: int = 0  # where the count word lies in the struct


@dataclass(frozen=True)
class MessageRuns:
    fixed: tuple[Run, ...]          # the first step: every count word a prefix needs is in these
    used: tuple[Run | Prefix, ...]  # the second, by offset: the prefixes and the fixed runs after

    def used_bytes(self, counts: dict[str, int]) -> int:
        """What a copy moves for the given counts (C expression -> value), before any two runs
        on one line move as one: tests and benchmarks."""
        return (sum(r.size for r in self.fixed)
                + sum(r.size if isinstance(r, Run)
                      else max(min(counts.get(r.count, 0), r.capacity) - r.ahead, 0) * r.item_size
                      for r in self.used))


def slot_lead(runs: MessageRuns) -> int:
    """Bytes before a ring's first slot (rg_ring.h: rg_slot_lead), so that the first step of
    a copy ends on a line boundary: the second then starts on a fresh line rather than reading
    again the one the first ended in. Slots of whole lines keep this offset in every line; a
    message with no second step (no bounded list or string) needs none."""
    if not any(isinstance(r, Prefix) for r in runs.used) or not runs.fixed:
        return 0
    end = runs.fixed[-1].offset + runs.fixed[-1].size
    return -end % BUS_LINE


def message_runs(message: MessageIR, structs: dict[str, StructLayout]) -> MessageRuns:
    found: list[Run] = []
    prefixes: list[Prefix] = []
    _walk(message.layout, 0, "m->", structs, found, prefixes)
    fixed = _merge(found)
    # The first step ends with the last run that holds a count word (all of them: no prefix).
    counts = {p.count_offset for p in prefixes}
    first = max((i + 1 for i, r in enumerate(fixed)
                 if any(r.offset <= c < r.offset + r.size for c in counts)), default=len(fixed))
    later: list[Run | Prefix] = [*fixed[first:], *prefixes]
    return MessageRuns(tuple(fixed[:first]), tuple(sorted(later, key=_start)))


def _start(r: Run | Prefix) -> int:
    return r.offset if isinstance(r, Run) else r.offset + r.ahead * r.item_size


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
                                   m.ctype.bound, ahead, off + word.offset))
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
