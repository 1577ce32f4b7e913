"""The ring kernels of schemas.kernels at warp and at thread granularity (per="warp" |
"thread"), for tests/test_ring_kernels.py to run each of its tests at every granularity: the
same names with a `_warp` / `_thread` suffix, the same block and grid (but stats_thread's: 32
threads, so that its round fits in shared memory), handlers written for the group that calls
them (ctx.rank(), ctx.group_size, ctx.sync()) instead of the block."""

from __future__ import annotations

from ringgen import ring_kernel
from schemas.kernels import Numbers, Ping, Pong, Stats


def _echo(kernel_id: str) -> str:
    return rf"""
__device__ bool {kernel_id}_handle(const Ping& req, Pong& resp, rg_ctx& ctx) {{
    if (ctx.rank() == 0) {{
        resp.seq = req.seq;
        resp.block = (int32_t)blockIdx.x;
    }}
    return true;
}}
"""


# Each thread of the group a partial sum and max over its stride of the values, then the
# group's first thread gathers the group's partials (one shared slot per thread of the block).
def _stats(kernel_id: str, block: int) -> str:
    return rf"""
__device__ bool {kernel_id}_handle(const Numbers& req, Stats& resp, rg_ctx& ctx) {{
    __shared__ int64_t part_sum[{block}];
    __shared__ int64_t part_max[{block}];
    int64_t sum = 0, top = INT64_MIN;
    for (uint32_t i = ctx.rank(); i < req.values.count; i += ctx.group_size) {{
        sum += req.values.items[i];
        top = max(top, req.values.items[i]);
    }}
    part_sum[threadIdx.x] = sum;
    part_max[threadIdx.x] = top;
    ctx.sync();
    if (ctx.rank() == 0) {{
        for (uint32_t t = 1; t < ctx.group_size; ++t) {{
            sum += part_sum[ctx.first + t];
            top = max(top, part_max[ctx.first + t]);
        }}
        resp.total = sum;
        resp.maximum = req.values.count ? top : 0;
        resp.count = (int32_t)req.values.count;
    }}
    return true;
}}
"""


def _crasher(kernel_id: str) -> str:
    return rf"""
__device__ bool {kernel_id}_handle(const Ping& req, Pong& resp, rg_ctx& ctx) {{
    if (ctx.rank() == 0) {{
        if (req.mode == 1) *(volatile int*)nullptr = 1;
        assert(req.mode != 2);  // a failed device assert aborts the kernel
        if (req.mode == 3) __trap();
        if (req.mode == 4) ctx.fail();
        for (int i = 0; req.mode == 5 && i < 200; ++i) __nanosleep(1000000);  // 200 ms
        resp.seq = req.seq;
    }}
    return true;
}}
"""


def _sink(kernel_id: str) -> str:
    return rf"""
__device__ void {kernel_id}_handle(const Ping& req, rg_ctx& ctx) {{
    (void)req;
    (void)ctx;
}}
"""


@ring_kernel(kernel_id="echo_warp", input=Ping, output=Pong, block=32, per="warp",
             cuda=_echo("echo_warp"))
def echo_warp(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="echo_thread", input=Ping, output=Pong, block=32, per="thread",
             cuda=_echo("echo_thread"))
def echo_thread(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="echo4_warp", input=Ping, output=Pong, block=8, grid=4, per="warp",
             cuda=_echo("echo4_warp"))
def echo4_warp(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="echo4_thread", input=Ping, output=Pong, block=8, grid=4, per="thread",
             cuda=_echo("echo4_thread"))
def echo4_thread(req: Ping) -> Pong:
    return Pong(seq=req.seq)


def _stats_reference(req: Numbers) -> Stats:
    return Stats(total=sum(req.values), maximum=max(req.values, default=0), count=len(req.values))


@ring_kernel(kernel_id="stats_warp", input=Numbers, output=Stats, block=64, per="warp",
             cuda=_stats("stats_warp", 64))
def stats_warp(req: Numbers) -> Stats:
    return _stats_reference(req)


@ring_kernel(kernel_id="stats_thread", input=Numbers, output=Stats, block=32, per="thread",
             cuda=_stats("stats_thread", 32))
def stats_thread(req: Numbers) -> Stats:
    return _stats_reference(req)


@ring_kernel(kernel_id="crasher_warp", input=Ping, output=Pong, block=32, per="warp",
             cuda=_crasher("crasher_warp"))
def crasher_warp(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="crasher_thread", input=Ping, output=Pong, block=32, per="thread",
             cuda=_crasher("crasher_thread"))
def crasher_thread(req: Ping) -> Pong:
    return Pong(seq=req.seq)


@ring_kernel(kernel_id="sink_warp", input=Ping, output=None, block=32, per="warp",
             cuda=_sink("sink_warp"))
def sink_warp(req: Ping) -> None:
    return None


@ring_kernel(kernel_id="sink_thread", input=Ping, output=None, block=32, per="thread",
             cuda=_sink("sink_thread"))
def sink_thread(req: Ping) -> None:
    return None
