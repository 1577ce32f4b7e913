"""A kernel whose handler writes over its own region, as a handler bug can: what the host must
survive (tests/test_untrusted.py). Not golden-tested: it exists for the fault tests only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringgen import message, ring_kernel

# What a Scribble request writes over (`target`), with `value`:
NOTHING = 0  # a plain echo
GRID = 1  # the region's grid (layout the host must not re-read)
OUT_TAIL = 2  # the block's output ring tail (an index the host must bound)
DOORBELL_FD = 3  # the host doorbell's eventfd number (a file descriptor of the host process)
RANDOM_REGION = 4  # `value` seeds random bytes anywhere in the region
RANDOM_LAYOUT = 5  # ... in the header, control and status lines
RANDOM_RINGS = 6  # ... random words over the block's ring headers (heads, tails, capacities)
LAYOUT = 7  # the grid (0xFFFFFFF0) and the rings' offset and strides (`value`): the layout the
#             kernel read at launch, which the host must never compute an address from
TARGETS = 8


@message
@dataclass
class Scribble:
    seq: int = 0
    target: np.int32 = 0
    value: int = 0


@message
@dataclass
class Scribbled:
    seq: int = 0


@dataclass
class Marks:
    count: int = 0  # requests the block handled


# The handler of every kernel here, named {id}, with {state} as its state parameter (or none).
SCRIBBLER_CU = r"""
__device__ bool {id}_handle(const Scribble& req, Scribbled& resp, {state}rg_ctx& ctx) {
    if (threadIdx.x == 0) {
        rg_region* r = ctx.region;
        uint8_t* base = (uint8_t*)r;
        uint64_t rng = (uint64_t)req.value, value = (uint64_t)req.value;
        uint64_t total = r->total_size, layout = r->rings_offset;
        rg_ring* out = rg_region_ring(r, blockIdx.x, RG_LANES);
        switch (req.target) {
            case 1: r->grid = (uint32_t)value; break;
            case 2:  // rung as a push rings it: the response below is not sent (see there)
                out->tail.value = value;
                rg_bell_ring(&r->control.out_bell);
                break;
            case 3:  // and armed, as an event loop arms its output bell
                r->control.doorbell.notify_fd_plus1 = value;
                r->control.doorbell.armed = 1;
                r->control.doorbell.notified = 0;
                break;
            case 4:
                for (int i = 0; i < 16; ++i)
                    base[rg_next_random(&rng) % total] = (uint8_t)rg_next_random(&rng);
                break;
            case 5:
                for (int i = 0; i < 16; ++i)
                    base[rg_next_random(&rng) % layout] = (uint8_t)rg_next_random(&rng);
                break;
            case 6:
                for (int i = 0; i < 2; ++i) {
                    uint32_t which = (uint32_t)(rg_next_random(&rng) % (RG_LANES + 1));
                    uint8_t* ring = (uint8_t*)rg_region_ring(r, blockIdx.x, which);
                    uint64_t word = rg_next_random(&rng) % (sizeof(rg_ring) / 8);
                    ((uint64_t*)ring)[word] = rg_next_random(&rng) >> (rg_next_random(&rng) % 64);
                }
                break;
            case 7:
                r->grid = 0xFFFFFFF0u;
                r->rings_offset = value;
                r->lane_stride = value;
                r->out_stride = value;
                break;
            default: break;
        }
        {count}
        resp.seq = req.seq;
    }
    // A scribbled output tail stays only without a response: the kernel keeps its own copy of
    // the tail (rg_kernel.h: rg_poller) and would publish over it.
    return req.target != 2;
}
"""


def handler_cu(kernel_id: str, state: bool = False) -> str:
    return (SCRIBBLER_CU.replace("{id}", kernel_id)
            .replace("{state}", "Marks& state, " if state else "")
            .replace("{count}", "state.count += 1;" if state else ""))


@ring_kernel(kernel_id="scribbler", input=Scribble, output=Scribbled, block=32, grid=1,
             queue_size=64, cuda=handler_cu("scribbler"))
def scribbler(req: Scribble) -> Scribbled:
    return Scribbled(seq=req.seq)


@ring_kernel(kernel_id="bystander", input=Scribble, output=Scribbled, block=32, grid=1,
             cuda=handler_cu("bystander"))
def bystander(req: Scribble) -> Scribbled:
    return Scribbled(seq=req.seq)


# A scribbler with state (read_state asks it for snapshots), and a kernel it can be routed to
# (connect publishes links to both).
@ring_kernel(kernel_id="ledger", input=Scribble, output=Scribbled, block=32, grid=1, state=Marks,
             cuda=handler_cu("ledger", state=True))
def ledger(req: Scribble, state: Marks) -> Scribbled:
    state.count += 1
    return Scribbled(seq=req.seq)


@ring_kernel(kernel_id="sink", input=Scribbled, output=Scribbled, block=32, grid=1)
def sink(req: Scribbled) -> Scribbled:
    return Scribbled(seq=req.seq)
