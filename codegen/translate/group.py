"""The threads that run one request of a translated handler (@ring_kernel(per=...)), as the C
the emitter writes for them: the block, one warp of it, or one thread (rg_kernel.h: rg_ctx's
group, group_size, first and rank()).

Groups of a block run side by side on different requests, so a handler's code may only wait
for its own group: a warp meets with __syncwarp over its lanes (the last warp of a block that
is not a whole number of warps has fewer), a thread with no one; only a per="block" handler
may use __syncthreads. Shared scratch of one group is indexed by its threads' threadIdx.x (a
slot per thread of the block) or by ctx.group (a slot per group)."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen.schema.kernels import groups_of


@dataclass(frozen=True)
class Group:
    per: str  # block | warp | thread
    block: int  # the block's threads

    @property
    def groups(self) -> int:
        """How many groups of the block run side by side: one slot each in shared scratch."""
        return groups_of(self.per, self.block)

    @property
    def alone(self) -> bool:
        """One thread: no barrier, no other thread to share a value with."""
        return self.per == "thread"

    @property
    def size(self) -> str:
        """The group's threads, as C: a constant for a block, ctx.group_size for a warp (the
        last warp of a block of 48 has 16)."""
        return {"block": str(self.block), "warp": "ctx.group_size", "thread": "1"}[self.per]

    @property
    def first(self) -> str:
        """The group's first thread in the block, as C (a constant for a block)."""
        return "0u" if self.per == "block" else "ctx.first"

    @property
    def index(self) -> str:
        """The group's slot in a per-group shared array, as C (a constant for a block)."""
        return "0" if self.per == "block" else "ctx.group"

    def prologue(self) -> list[str]:
        """The handler's first lines: this thread's rank in its group and the warp's lanes."""
        if self.alone:
            return []
        lines = ["    const uint32_t rg_rank = ctx.rank(); (void)rg_rank;  // this thread in its group"]
        if self.per == "warp":
            lines.append("    const unsigned rg_lanes = ctx.lanes(); (void)rg_lanes;  // the warp's lanes")
        return lines

    def barrier(self, why: str) -> str | None:
        """The group's barrier as one C statement (None for a thread: nothing to wait for)."""
        if self.alone:
            return None
        call = "__syncthreads()" if self.per == "block" else "__syncwarp(rg_lanes)"
        return f"{call};  // {why}"

    def leader(self, stmt: str) -> str:
        """`stmt` run by the group's first thread alone."""
        return stmt if self.alone else f"if (rg_rank == 0) {stmt}"
