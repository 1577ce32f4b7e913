"""A kernel that declares a send target whose message has no device layout (an unbounded
str): `ringgen build` refuses it, naming the target."""

from __future__ import annotations

from dataclasses import dataclass

from ringgen import message, ring_kernel


@message
@dataclass
class Ping:
    n: int = 0


@message
@dataclass
class Note:
    text: str = ""  # no MaxLen: no C layout


@ring_kernel(kernel_id="noter", input=Ping, output=Ping, cuda="""
__device__ bool noter_handle(const Ping& req, Ping& resp, noter_ctx& ctx) { return true; }
""", sends={"note": Note})
def noter(req: Ping) -> Ping:
    return req
