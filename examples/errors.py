"""Error handling: responses carry success / error / error_code; a
handler's error is counted; a handler that crashes fails its kernel, not the program."""

from __future__ import annotations

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


SQRT_CU = r"""
__device__ void set_error(Response& resp, const char* text, int64_t code) {
    resp.success = 0;
    resp.error.present = 1;
    uint32_t n = 0;
    while (text[n] && n < sizeof resp.error.value.data) { resp.error.value.data[n] = text[n]; ++n; }
    resp.error.value.len = n;
    resp.error_code.present = 1;
    resp.error_code.value = code;
}

__device__ bool safe_sqrt_handle(const Measurement& req, Response& resp, rg_ctx& ctx) {
    if (threadIdx.x != 0) return true;
    if (req.value != req.value) { set_error(resp, "not a number", 400); ctx.fail(); }
    else if (req.value < 0) { set_error(resp, "negative input", 400); ctx.fail(); }
    else resp.result = sqrt(req.value);
    return true;
}
"""


@ring_kernel(kernel_id="safe_sqrt", input=Measurement, output=Response, block=32, cuda=SQRT_CU)
def safe_sqrt(req: Measurement) -> Response:
    if req.value != req.value:
        return Response(success=False, error="not a number", error_code=400)
    if req.value < 0:
        return Response(success=False, error="negative input", error_code=400)
    return Response(result=req.value ** 0.5)


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


@ring_kernel(kernel_id="risky", input=Measurement, output=HostResponse)
async def risky(ctx: ActorContext) -> None:
    while not ctx.should_terminate:
        request = await ctx.receive(timeout=0.1)
        if request is None:
            continue
        try:
            result = risky_operation(request)
            await ctx.send(request.reply(HostResponse, success=True, result=result))
        except ValidationError as e:
            await ctx.send(request.reply(HostResponse, success=False, error=str(e), error_code=400))
        except Exception:
            ctx.fail()
            await ctx.send(request.reply(HostResponse, success=False, error="Internal error",
                                         error_code=500))


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
    return Response(result=req.value)


async def demo(runtime: RingKernelRuntime) -> None:
    await runtime.launch("safe_sqrt")
    for value in (16.0, -4.0, float("nan")):
        r = await runtime.request("safe_sqrt", Measurement(value=value), timeout=5.0)
        print(f"  sqrt({value}) -> " + (f"{r.result}" if r.success else
                                        f"error {r.error_code}: {r.error}"))
    await runtime.launch("risky")
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
