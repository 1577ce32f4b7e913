"""Ring kernels for the accounting tests: each request says what the handler does with it, so a
test can make a response the host cannot decode, a request without a response, a crash, or a
slow request that a kill or a terminate catches in the middle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ringgen import MaxLen, message, ring_kernel

ANSWER, BAD_UTF8, OVER_MAXLEN, NO_RESPONSE, SEGFAULT, SLOW = range(6)


@message
@dataclass
class Job:
    seq: int
    mode: np.int32 = 0


@message
@dataclass
class Outcome:
    seq: int
    block: np.int32 = 0
    text: Annotated[str, MaxLen(8)] = ""
    items: Annotated[bytes, MaxLen(4)] = b""


ACCOUNT_CU = r"""
__device__ bool {id}_handle(const Job& req, Outcome& resp, rg_ctx& ctx) {
    (void)ctx;
    if (req.mode == 3) return false;                              // NO_RESPONSE
    if (threadIdx.x == 0) {
        resp.seq = req.seq;
        resp.block = (int32_t)blockIdx.x;
        if (req.mode == 1) {                                      // BAD_UTF8
            resp.text.len = 2;
            resp.text.data[0] = (char)0xff;
            resp.text.data[1] = (char)0xfe;
        }
        if (req.mode == 2) resp.items.len = 1000;                 // OVER_MAXLEN
        if (req.mode == 4) *(volatile int*)nullptr = 1;           // SEGFAULT
        for (int i = 0; req.mode == 5 && i < 200; ++i) __nanosleep(1000000);  // SLOW: 200 ms
    }
    return true;
}
"""


def _reference(req: Job) -> Outcome | None:
    return None if req.mode == NO_RESPONSE else Outcome(seq=req.seq)


@ring_kernel(kernel_id="account", input=Job, output=Outcome, block=32, grid=2,
             cuda=ACCOUNT_CU.replace("{id}", "account"))
def account(req: Job) -> Outcome | None:
    return _reference(req)


@ring_kernel(kernel_id="account1", input=Job, output=Outcome, block=32, grid=1,
             cuda=ACCOUNT_CU.replace("{id}", "account1"))
def account1(req: Job) -> Outcome | None:
    return _reference(req)


@ring_kernel(kernel_id="account4", input=Job, output=Outcome, block=8, grid=4,
             cuda=ACCOUNT_CU.replace("{id}", "account4"))
def account4(req: Job) -> Outcome | None:
    return _reference(req)
