"""Request-response: `a op b` evaluated on the device.

    resp = await runtime.request("calculator", CalculateRequest(expression="2 + 2"), timeout=5.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID, uuid4

from ringgen import MaxLen, RingKernelRuntime, message, ring_kernel


@message
@dataclass
class CalculateRequest:
    expression: Annotated[str, MaxLen(64)]
    message_id: UUID = field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


@message
@dataclass
class CalculateResponse:
    result: float
    success: bool = True
    error: Annotated[str, MaxLen(64)] | None = None
    message_id: UUID = field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


CALCULATOR_CU = r"""
// A number: [-]digits[.digits], at most 15 significant digits and 8 decimals, so that
// mantissa / 10^k is exact in double arithmetic and rounds as Python's float() does.
__device__ bool calc_number(const char* s, uint32_t n, uint32_t* i, double* out) {
    while (*i < n && s[*i] == ' ') ++*i;
    bool neg = *i < n && s[*i] == '-';
    if (neg) ++*i;
    int64_t mantissa = 0;
    int digits = 0, decimals = 0;
    bool dot = false;
    for (; *i < n; ++*i) {
        char c = s[*i];
        if (c == '.' && !dot) { dot = true; continue; }
        if (c < '0' || c > '9') break;
        mantissa = mantissa * 10 + (c - '0');
        ++digits;
        if (dot) ++decimals;
    }
    if (!digits || digits > 15 || decimals > 8) return false;
    const double pow10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};
    *out = (neg ? -(double)mantissa : (double)mantissa) / pow10[decimals];
    return true;
}

__device__ void calc_error(CalculateResponse& resp, const char* text) {
    resp.success = 0;
    resp.error.present = 1;
    uint32_t n = 0;
    while (text[n] && n < sizeof resp.error.value.data) {
        resp.error.value.data[n] = text[n];
        ++n;
    }
    resp.error.value.len = n;
}

__device__ bool calculator_handle(const CalculateRequest& req, CalculateResponse& resp, rg_ctx& ctx) {
    if (threadIdx.x != 0) return true;  // one thread parses; the block's others idle
    const char* s = req.expression.data;
    uint32_t n = req.expression.len, i = 0;
    double a = 0, b = 0;
    if (!calc_number(s, n, &i, &a)) { calc_error(resp, "parse error"); ctx.fail(); return true; }
    while (i < n && s[i] == ' ') ++i;
    if (i == n) { resp.result = a; return true; }
    char op = s[i++];
    if (!calc_number(s, n, &i, &b)) { calc_error(resp, "parse error"); ctx.fail(); return true; }
    while (i < n && s[i] == ' ') ++i;
    if (i != n) { calc_error(resp, "parse error"); ctx.fail(); return true; }
    switch (op) {
        case '+': resp.result = a + b; break;
        case '-': resp.result = a - b; break;
        case '*': resp.result = a * b; break;
        case '/':
            if (b == 0) { calc_error(resp, "division by zero"); ctx.fail(); return true; }
            resp.result = a / b;
            break;
        default: calc_error(resp, "unknown operator"); ctx.fail(); break;
    }
    return true;
}
"""

_NUMBER = r"\s*(-?\d+(?:\.\d*)?)"


@ring_kernel(kernel_id="calculator", input=CalculateRequest, output=CalculateResponse,
             block=32, cuda=CALCULATOR_CU)
def calculator(req: CalculateRequest, ctx: Any = None) -> CalculateResponse:
    """Reference semantics of the CUDA C handler (`ringgen verify` checks them): a request it
    cannot evaluate is answered with an error and counted by ctx.fail()."""
    response = _evaluate(req)
    if not response.success and ctx is not None:
        ctx.fail()
    return response


def _evaluate(req: CalculateRequest) -> CalculateResponse:
    m = re.fullmatch(_NUMBER + r"\s*(?:([^\s\d.])" + _NUMBER + r")?\s*", req.expression)
    numbers_ok = m and all(len(x.replace("-", "").replace(".", "")) <= 15
                           and len(x.partition(".")[2]) <= 8 for x in m.group(1, 3) if x)
    if not m or not numbers_ok or (m.group(2) and not m.group(3)):
        return req.reply(CalculateResponse, result=0.0, success=False, error="parse error")
    a, op, b = float(m.group(1)), m.group(2), m.group(3)
    if op is None:
        return req.reply(CalculateResponse, result=a)
    y = float(b)
    if op not in "+-*/":
        return req.reply(CalculateResponse, result=0.0, success=False, error="unknown operator")
    if op == "/" and y == 0:
        return req.reply(CalculateResponse, result=0.0, success=False, error="division by zero")
    result = {"+": a + y, "-": a - y, "*": a * y, "/": a / y if y else 0.0}[op]
    return req.reply(CalculateResponse, result=result)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("calculator")
    for expression in ("2 + 2", "7 / 2", "-1.5 * 4", "1 / 0", "two + 2"):
        response = await runtime.request("calculator", CalculateRequest(expression=expression),
                                         timeout=5.0)
        if response.success:
            print(f"  {expression!r:12} = {response.result}")
        else:
            print(f"  {expression!r:12} -> error: {response.error}")
    t = runtime.telemetry("calculator")
    print(f"  telemetry: {t.processed} processed, {t.errors} handler errors, "
          f"p50 {t.latency_p50_us:.0f} us")
