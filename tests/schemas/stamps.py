"""A kernel that echoes datetimes: what a device sends back must equal what it was sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ringgen import message, ring_kernel


@message
@dataclass
class Stamp:
    when: datetime
    maybe: datetime | None = None


STAMP_CU = r"""
__device__ bool stamp_echo_handle(const Stamp& req, Stamp& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        resp.when = req.when;
        resp.maybe = req.maybe;
    }
    return true;
}
"""


@ring_kernel(kernel_id="stamp_echo", input=Stamp, output=Stamp, block=32, grid=1, cuda=STAMP_CU)
def stamp_echo(req: Stamp) -> Stamp:
    return req.reply(Stamp, when=req.when, maybe=req.maybe)
