"""Kernels of tests/test_bus.py: the same echo at each granularity (per="block" | "warp" |
"thread"), over messages with a bounded list and a bounded string on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ringgen import MaxLen, message, ring_kernel

CAP = 40


@message
@dataclass
class Vec:
    seq: int = 0
    xs: Annotated[list[float], MaxLen(CAP)] = ()  # type: ignore[assignment]
    tag: Annotated[str, MaxLen(12)] = ""
    fail: bool = False


@message
@dataclass
class VecOut:
    seq: int = 0
    total: float = 0.0
    xs: Annotated[list[float], MaxLen(CAP)] = ()  # type: ignore[assignment]
    tag: Annotated[str, MaxLen(12)] = ""
    group_size: int = 0


# Spread over the group's threads: each writes its own items, then the group meets before
# its first thread sums them (a group of one thread does it all).
def _echo(kernel_id: str) -> str:
    return rf"""
__device__ bool {kernel_id}_handle(const Vec& req, VecOut& resp, rg_ctx& ctx) {{
    for (uint32_t i = ctx.rank(); i < req.xs.count; i += ctx.group_size)
        resp.xs.items[i] = 2.0 * req.xs.items[i];
    ctx.sync();
    if (ctx.rank() == 0) {{
        double total = 0.0;
        for (uint32_t i = 0; i < req.xs.count; ++i) total += resp.xs.items[i];
        resp.total = total;
        resp.xs.count = req.xs.count;
        resp.seq = req.seq;
        rg_str_set_n(resp.tag, req.tag.data, req.tag.len);
        resp.group_size = ctx.group_size;
        if (req.fail) ctx.fail();
    }}
    return req.seq >= 0;  // a negative seq: no response
}}
"""


def _reference(req: Vec) -> VecOut:
    xs = [2.0 * x for x in req.xs]
    return VecOut(seq=req.seq, total=sum(xs), xs=xs, tag=req.tag)


@ring_kernel(kernel_id="vec_block", input=Vec, output=VecOut, block=64, per="block",
             cuda=_echo("vec_block"))
def vec_block(req: Vec) -> VecOut:
    return _reference(req)


@ring_kernel(kernel_id="vec_warp", input=Vec, output=VecOut, block=80, per="warp",
             cuda=_echo("vec_warp"))
def vec_warp(req: Vec) -> VecOut:
    return _reference(req)


@ring_kernel(kernel_id="vec_thread", input=Vec, output=VecOut, block=32, per="thread",
             cuda=_echo("vec_thread"))
def vec_thread(req: Vec) -> VecOut:
    return _reference(req)
