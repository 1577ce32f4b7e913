"""Error handling: error responses, an error actor fed through sends=, crashes contained.

Responses carry success / error / error_code; every error also goes to an error actor through
sends=; a handler that crashes fails its kernel, not the program."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from ringgen import ActorContext, KernelFaultError, MaxLen, RingKernelRuntime, message, ring_kernel


@message
@dataclass
class Measurement:
    value: float


@message
@dataclass
class Response:  # an error-carrying response, with a device layout
    success: bool = True
    error: Annotated[str, MaxLen(48)] | None = None
    error_code: int | None = None
    result: float = 0.0


@message
@dataclass
class ErrorReport:  # what every actor sends its error actor (a device layout: kernels send it)
    source: Annotated[str, MaxLen(16)]
    code: int
    text: Annotated[str, MaxLen(48)]
    value: float = 0.0


SQRT_CU = r"""
// The error goes twice: in the response, to the caller, and as an ErrorReport to whatever
// runtime.connect("safe_sqrt.errors", ...) bound the error target to.
__device__ void report(const Measurement& req, Response& resp, safe_sqrt_ctx& ctx,
                       const char* text, int64_t code) {
    resp.success = 0;
    resp.error.present = 1;
    rg_str_set(resp.error.value, text);
    resp.error_code.present = 1;
    resp.error_code.value = code;
    ErrorReport e;
    rg_init_ErrorReport(&e);
    rg_str_set(e.source, "safe_sqrt");
    rg_str_set(e.text, text);
    e.code = code;
    e.value = req.value;
    ctx.send_errors(e);
    ctx.fail();
}

__device__ bool safe_sqrt_handle(const Measurement& req, Response& resp, safe_sqrt_ctx& ctx) {
    if (threadIdx.x != 0) return true;
    if (req.value != req.value) report(req, resp, ctx, "not a number", 400);
    else if (req.value < 0) report(req, resp, ctx, "negative input", 400);
    else resp.result = sqrt(req.value);
    return true;
}
"""


@ring_kernel(kernel_id="safe_sqrt", input=Measurement, output=Response, block=32, cuda=SQRT_CU,
             sends={"errors": ErrorReport})
def safe_sqrt(req: Measurement, ctx: Any) -> Response:
    for failed, text in ((req.value != req.value, "not a number"), (req.value < 0, "negative input")):
        if failed:
            ctx.send("errors", ErrorReport(source="safe_sqrt", code=400, text=text, value=req.value))
            ctx.fail()
            return Response(success=False, error=text, error_code=400)
    return Response(result=math.sqrt(req.value))  # as C's sqrt: sqrt(-0.0) is -0.0


@ring_kernel(kernel_id="error_log", input=ErrorReport)
async def error_log(ctx: ActorContext) -> None:
    """The error actor: every actor's errors, in one place (here printed)."""
    while not ctx.should_terminate:
        report = await ctx.receive(timeout=0.1)
        if report is not None:
            print(f"  error actor: {report.source} {report.code} {report.text} ({report.value:g})")


class ValidationError(ValueError):
    pass


@message
@dataclass
class HostResponse:  # `result: Any` has no C layout: this one lives on the host only
    success: bool = True
    error: str | None = None
    error_code: int | None = None
    result: Any = None


def risky_operation(request: Measurement) -> dict[str, float]:
    if request.value > 1e6:
        raise ValidationError("value too large")
    if request.value == 13:
        raise RuntimeError("unlucky")
    return {"doubled": request.value * 2}


@ring_kernel(kernel_id="risky", input=Measurement, output=HostResponse,
             sends={"errors": ErrorReport})
async def risky(ctx: ActorContext) -> None:
    while not ctx.should_terminate:
        request = await ctx.receive(timeout=0.1)
        if request is None:
            continue
        try:
            result = risky_operation(request)
            await ctx.send(request.reply(HostResponse, success=True, result=result))
            continue
        except ValidationError as e:
            code, text = 400, str(e)
        except Exception as e:
            ctx.fail()
            code, text = 500, f"{type(e).__name__}: {e}"
        await ctx.send("errors", ErrorReport(source="risky", code=code, text=text[:48],
                                             value=request.value))
        await ctx.send(request.reply(HostResponse, success=False, error_code=code,
                                     error="Internal error" if code == 500 else text))


CRASH_CU = r"""
__device__ bool fragile_handle(const Measurement& req, Response& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) {
        if (req.value < 0) __trap();  // a bug: the kernel dies, the program does not
        resp.result = req.value;
    }
    return true;
}
"""


@ring_kernel(kernel_id="fragile", input=Measurement, output=Response, block=32, cuda=CRASH_CU)
def fragile(req: Measurement) -> Response:
    if req.value < 0:  # the same bug: where the kernel traps, its Python raises
        raise ValueError("fragile cannot take a negative value")
    return Response(result=req.value)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("error_log")
    await runtime.launch("safe_sqrt")
    await runtime.connect("safe_sqrt.errors", "error_log")  # errors go to the error actor
    for value in (16.0, -4.0, float("nan")):
        r = await runtime.request("safe_sqrt", Measurement(value=value), timeout=5.0)
        print(f"  sqrt({value}) -> " + (f"{r.result}" if r.success else
                                        f"error {r.error_code}: {r.error}"))
    await runtime.launch("risky")
    await runtime.connect("risky.errors", "error_log")
    for value in (2.0, 2e7, 13.0):
        r = await runtime.request("risky", Measurement(value=value), timeout=5.0)
        print(f"  risky({value:g}) -> " + (f"{r.result}" if r.success else
                                          f"error {r.error_code}: {r.error}"))
    await runtime.launch("fragile")
    print(f"  fragile(1) -> {(await runtime.request('fragile', Measurement(value=1.0), timeout=5.0)).result}")
    try:
        await runtime.request("fragile", Measurement(value=-1.0), timeout=5.0)
    except KernelFaultError as e:
        print(f"  fragile(-1) -> KernelFaultError: {e}")
    print(f"  state of fragile: {runtime.state('fragile').value}; safe_sqrt still answers: "
          f"{(await runtime.request('safe_sqrt', Measurement(value=9.0), timeout=5.0)).result}")
