"""Request-response: `a op b` evaluated on the device.

    resp = await runtime.request("calculator", CalculateRequest(expression="2 + 2"), timeout=5.0)
"""

from __future__ import annotations

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


@ring_kernel(kernel_id="calculator", input=CalculateRequest, output=CalculateResponse, block=32)
def calculator(req: CalculateRequest, ctx: Any) -> CalculateResponse:
    """A Python handler (translated to the device's C): `a op b` or a lone number, where a
    number is [-]digits[.digits] with at most 15 digits and 8 decimals (so that mantissa /
    10**decimals is exact in C's doubles as in Python's). What it cannot evaluate is answered
    with an error and counted by ctx.fail()."""
    n = len(req.expression)
    i = 0
    a = 0.0
    b = 0.0
    op = " "
    count = 0  # numbers read
    parsed = True
    while parsed and count < 2:
        while i < n and req.expression[i] == " ":
            i += 1
        negative = i < n and req.expression[i] == "-"
        if negative:
            i += 1
        mantissa = 0
        digits = 0
        decimals = 0
        dot = False
        while i < n:
            c = req.expression[i]
            if c == "." and not dot:
                dot = True
            elif "0" <= c <= "9":
                digits += 1
                if digits <= 15:  # more is a parse error below: the mantissa stays in int64
                    mantissa = mantissa * 10 + (ord(c) - ord("0"))
                if dot:
                    decimals += 1
            else:
                break
            i += 1
        if digits == 0 or digits > 15 or decimals > 8:
            parsed = False
            break
        value = mantissa / 10 ** decimals
        if negative:
            value = -value
        while i < n and req.expression[i] == " ":
            i += 1
        count += 1
        if count == 1:
            a = value
            if i == n:
                return req.reply(CalculateResponse, result=a)
            op = req.expression[i]
            i += 1
        else:
            b = value
    if not parsed or i != n:
        ctx.fail()
        return req.reply(CalculateResponse, result=0.0, success=False, error="parse error")
    if op == "+":
        return req.reply(CalculateResponse, result=a + b)
    if op == "-":
        return req.reply(CalculateResponse, result=a - b)
    if op == "*":
        return req.reply(CalculateResponse, result=a * b)
    if op == "/" and b != 0.0:
        return req.reply(CalculateResponse, result=a / b)
    ctx.fail()
    if op == "/":
        return req.reply(CalculateResponse, result=0.0, success=False, error="division by zero")
    return req.reply(CalculateResponse, result=0.0, success=False, error="unknown operator")


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
