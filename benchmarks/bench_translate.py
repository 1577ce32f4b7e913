"""Handlers written in Python: the translated handler beside hand-written CUDA C of the same
handler, on the CPU backend, in one run (time per message and the ratio), and the build time of
50 translated kernels (no compiler run).

    python benchmarks/bench_translate.py [--messages N]

Pairs: the worker's block sum of 256 floats (block 128), a 256-element axpy reduced to one
number (sum of a*x[i] + y[i]), the same of 8 elements with a warp per request (per="warp")
and with a thread per request (per="thread"), and a string parser (comma-separated integers
summed, one character at a time).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

HANDLERS = r'''
from __future__ import annotations
from dataclasses import dataclass
from typing import Annotated
import ringgen as rg
from ringgen import MaxLen, message, ring_kernel


@message
@dataclass
class Data:
    data: Annotated[list[float], MaxLen(256)]
    a: float = 2.0
    y: Annotated[list[float], MaxLen(256)] = ()


@message
@dataclass
class Total:
    result: float = 0.0


SUM_CU = r"""
__device__ bool sum_c_handle(const Data& req, Total& resp, rg_ctx& ctx) {
    (void)ctx;
    __shared__ double part[128];
    double s = 0.0;
    for (uint32_t i = threadIdx.x; i < req.data.count; i += blockDim.x) s += req.data.items[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) resp.result = part[0];
    return true;
}
"""

AXPY_CU = r"""
__device__ bool axpy_c_handle(const Data& req, Total& resp, rg_ctx& ctx) {
    (void)ctx;
    __shared__ double part[128];
    double s = 0.0;
    uint32_t n = req.data.count < req.y.count ? req.data.count : req.y.count;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) s += req.a * req.data.items[i] + req.y.items[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) resp.result = part[0];
    return true;
}
"""


@message
@dataclass
class Line:
    text: Annotated[str, MaxLen(128)]


@message
@dataclass
class Numbers:
    total: int = 0
    count: int = 0
    ok: bool = True


PARSE_CU = r"""
__device__ bool parse_c_handle(const Line& req, Numbers& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x != 0) return true;
    int64_t total = 0, value = 0, count = 0;
    int digits = 0;
    for (uint32_t i = 0; i < req.text.len; ++i) {
        char c = req.text.data[i];
        if (c >= '0' && c <= '9') { value = value * 10 + (c - '0'); ++digits; }
        else if (c == ',' && digits) { total += value; ++count; value = 0; digits = 0; }
        else { resp.ok = 0; return true; }
    }
    if (!digits) { resp.ok = 0; return true; }
    resp.total = total + value;
    resp.count = count + 1;
    return true;
}
"""


@ring_kernel(kernel_id="parse_py", input=Line, output=Numbers, block=32)
def parse_py(req: Line) -> Numbers:
    total = 0
    count = 0
    value = 0
    digits = 0
    for c in req.text:
        if "0" <= c <= "9":
            value = value * 10 + (ord(c) - 48)
            digits += 1
        elif c == "," and digits > 0:
            total += value
            count += 1
            value = 0
            digits = 0
        else:
            return Numbers(ok=False)
    if digits == 0:
        return Numbers(ok=False)
    return Numbers(total=total + value, count=count + 1)


@ring_kernel(kernel_id="parse_c", input=Line, output=Numbers, block=32, cuda=PARSE_CU)
def parse_c(req: Line) -> Numbers:
    return parse_py(req)


@ring_kernel(kernel_id="sum_py", input=Data, output=Total, block=128)
def sum_py(req: Data) -> Total:
    return Total(result=sum(req.data))


@ring_kernel(kernel_id="sum_c", input=Data, output=Total, block=128, cuda=SUM_CU)
def sum_c(req: Data) -> Total:
    return Total(result=sum(req.data))


@ring_kernel(kernel_id="axpy_py", input=Data, output=Total, block=128)
def axpy_py(req: Data) -> Total:
    n = min(len(req.data), len(req.y))
    return Total(result=sum(req.a * req.data[i] + req.y[i] for i in rg.prange(n)))


@ring_kernel(kernel_id="axpy_c", input=Data, output=Total, block=128, cuda=AXPY_CU)
def axpy_c(req: Data) -> Total:
    n = min(len(req.data), len(req.y))
    return Total(result=sum(req.a * req.data[i] + req.y[i] for i in range(n)))
'''

GROUPS = r'''

@message
@dataclass
class Small:
    x: Annotated[list[float], MaxLen(8)]
    y: Annotated[list[float], MaxLen(8)]
    a: float = 2.0


# a group's own: rank and size from ctx, a warp meets over its lanes (a thread alone does not)
GROUP_AXPY_CU = r"""
__device__ bool {kid}_handle(const Small& req, Total& resp, rg_ctx& ctx) {{
    __shared__ double part[64];
    uint32_t n = req.x.count < req.y.count ? req.x.count : req.y.count;
    double s = 0.0;
    for (uint32_t i = ctx.rank(); i < n; i += ctx.group_size) s += req.a * req.x.items[i] + req.y.items[i];
    if (ctx.group_size == 1) {{ resp.result = s; return true; }}
    part[threadIdx.x] = s;
    __syncwarp();
    if (ctx.rank() == 0) {{
        double t = 0.0;
        for (uint32_t k = 0; k < ctx.group_size; ++k) t += part[ctx.first + k];
        resp.result = t;
    }}
    __syncwarp();
    return true;
}}
"""
'''

GROUP_PAIR = '''

@ring_kernel(kernel_id="{per}_py", input=Small, output=Total, block=64, per="{per}")
def {per}_py(req: Small) -> Total:
    n = min(len(req.x), len(req.y))
    return Total(result=sum(req.a * req.x[i] + req.y[i] for i in rg.prange(n)))


@ring_kernel(kernel_id="{per}_c", input=Small, output=Total, block=64, per="{per}",
             cuda=GROUP_AXPY_CU.format(kid="{per}_c"))
def {per}_c(req: Small) -> Total:
    return {per}_py(req)
'''

KERNEL_50 = '''
@ring_kernel(kernel_id="k{i}", input=Data, output=Total, block=64)
def k{i}(req: Data) -> Total:
    total = 0.0
    hi = -1.0
    for j in rg.prange(len(req.data)):
        v = req.data[j] * {i}.5
        if v != v:
            continue
        total += v
        hi = max(hi, v)
    n = 0
    while n < len(req.y) and req.y[n] > 0.0:
        n += 1
    return Total(result=total + hi * n - req.a // 3.0 + len(req.y) % 7)
'''


def load(package_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(package_dir.name, package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package_dir.name] = module
    spec.loader.exec_module(module)
    return module


def per_message_us(runtime: object, kernel_id: str, msgs: list[object]) -> float:
    start = time.perf_counter()
    runtime.send_many(kernel_id, msgs)  # type: ignore[attr-defined]
    got = 0
    while got < len(msgs):
        got += len(runtime.receive_many(kernel_id, len(msgs) - got, timeout=30.0))  # type: ignore[attr-defined]
    return (time.perf_counter() - start) / len(msgs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from ringgen.codegen.build import build, plan
    from ringgen.runtime.sync import SyncRuntime

    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "bench_handlers.py"
        pairs_of_groups = "".join(GROUP_PAIR.format(per=per) for per in ("warp", "thread"))
        module.write_text(HANDLERS + GROUPS + pairs_of_groups)
        many = Path(tmp) / "bench_many.py"
        many.write_text(HANDLERS.split("SUM_CU =")[0] + "".join(KERNEL_50.format(i=i) for i in range(50)))
        sys.path.insert(0, tmp)

        start = time.perf_counter()
        files = plan([str(many)], Path(tmp) / "gen_many").files()
        build_s = time.perf_counter() - start
        print(f"build of 50 translated kernels (no compiler): {build_s:.3f} s, "
              f"{sum(name.endswith('.cu') for name in files)} .cu files")

        result = build([str(module)], Path(tmp) / "gen", "bench_handlers_pkg")
        pkg = load(result.plan.package_dir)
        data = [float(i % 17) - 8.0 for i in range(256)]
        msgs = [pkg.Data(data=data, a=1.5, y=data[::-1]) for _ in range(args.messages)]
        line = ",".join(str(i * 7919 % 100003) for i in range(20))  # 20 numbers, ~110 chars
        lines = [pkg.Line(text=line) for _ in range(args.messages)]
        small = [pkg.Small(x=data[:8], y=data[8:16], a=1.5) for _ in range(args.messages)]
        pairs = [("worker block sum", "sum_py", "sum_c", msgs),
                 ("axpy of 256, reduced", "axpy_py", "axpy_c", msgs),
                 ("axpy of 8, a warp per request", "warp_py", "warp_c", small),
                 ("axpy of 8, a thread per request", "thread_py", "thread_c", small),
                 ("string parser", "parse_py", "parse_c", lines)]
        with SyncRuntime(pkg, backend="cpu") as runtime:
            for _, translated, handwritten, inputs in pairs:
                for kid in (translated, handwritten):
                    runtime.launch(kid)
                    per_message_us(runtime, kid, inputs[:200])  # warm up
            # fresh messages: request() refuses one sent to that kernel already (the warm-up)
            want = pkg.parse_py(lines[0])
            got = runtime.request("parse_py", pkg.Line(text=line), timeout=10.0)
            assert (got.total, got.count, got.ok) == (want.total, want.count, want.ok) == \
                (sum(int(x) for x in line.split(",")), 20, True)
            for kid in ("warp_py", "warp_c", "thread_py", "thread_c"):  # Python's sum, in order
                fresh = pkg.Small(x=data[:8], y=data[8:16], a=1.5)
                assert runtime.request(kid, fresh, timeout=10.0).result == pkg.warp_py(small[0]).result
            for title, translated, handwritten, inputs in pairs:
                py_times, c_times = [], []
                for _ in range(args.rounds):  # interleaved, so drift hits both alike
                    py_times.append(per_message_us(runtime, translated, inputs))
                    c_times.append(per_message_us(runtime, handwritten, inputs))
                py, c = statistics.median(py_times), statistics.median(c_times)
                print(f"{title}: translated {py:7.2f} us/msg, hand-written C {c:7.2f} us/msg, "
                      f"ratio {py / c:.2f}x (median of {args.rounds} rounds of {args.messages})")


if __name__ == "__main__":
    main()
