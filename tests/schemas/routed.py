"""Kernels joined by routes (runtime.connect): pipeline stages, a crashing middle stage, a
fan-out, a keyed target and one of another type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import message, ring_kernel


@message
@dataclass
class Item:
    seq: int
    tag: int = 0  # -1: the crashy stage dies on it
    hops: int = 0
    block: np.int32 = 0  # the block of the last stage that handled it


@message
@dataclass
class Other:
    x: int = 0


STAGE_CU = r"""
__device__ bool {id}_handle(const Item& req, Item& resp, {id}_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        if ({crash} && req.tag == -1) __trap();
        resp.seq = req.seq;
        resp.tag = req.tag;
        resp.hops = req.hops + 1;
        resp.block = (int32_t)blockIdx.x;
    }
    return true;
}
"""


def _cu(kernel_id: str, crash: bool = False) -> str:
    return STAGE_CU.replace("{id}", kernel_id).replace("{crash}", "1" if crash else "0")


def _stage(req: Item) -> Item:
    return Item(seq=req.seq, tag=req.tag, hops=req.hops + 1)


@ring_kernel(kernel_id="a", input=Item, output=Item, block=2, cuda=_cu("a"))
def a(req: Item) -> Item:
    return _stage(req)


@ring_kernel(kernel_id="b", input=Item, output=Item, block=2, cuda=_cu("b", crash=True))
def b(req: Item) -> Item:
    return _stage(req)


@ring_kernel(kernel_id="c", input=Item, output=Item, block=2, cuda=_cu("c"))
def c(req: Item) -> Item:
    return _stage(req)


@ring_kernel(kernel_id="pub", input=Item, output=Item, block=2, grid=2, cuda=_cu("pub"))
def pub(req: Item) -> Item:
    return _stage(req)


@ring_kernel(kernel_id="keyed_sink", input=Item, output=Item, block=2, grid=4, key="tag",
             cuda=_cu("keyed_sink"))
def keyed_sink(req: Item) -> Item:
    return _stage(req)


OTHER_CU = r"""
__device__ bool other_handle(const Other& req, Other& resp, other_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) resp.x = req.x;
    return true;
}
"""


@ring_kernel(kernel_id="other", input=Other, output=Other, block=1, cuda=OTHER_CU)
def other(req: Other) -> Other:
    return Other(x=req.x)
