"""UnifiedBuffer: its state machine, registration with the runtime, and the seed's large-data
example (a kernel reducing a million elements it reads through a BufferRef)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from conftest import generated_package

from ringgen import BufferState, RingKernelRuntime, UnifiedBuffer


def test_state_machine() -> None:
    buf = UnifiedBuffer(8, np.float32)
    assert buf.state is BufferState.SYNCHRONIZED and buf.host.dtype == np.float32
    assert buf.state is BufferState.HOST_DIRTY  # the host may have written through .host
    buf.to_device()
    assert buf.state is BufferState.SYNCHRONIZED
    buf.device_wrote()
    assert buf.state is BufferState.DEVICE_DIRTY
    buf.host[0] = 1.0
    assert buf.state is BufferState.HOST_DIRTY
    assert UnifiedBuffer.of(buf.ref) is buf and buf.ref.buffer_id == buf.buffer_id
    with pytest.raises(ValueError, match="at least one element"):
        UnifiedBuffer(0)


def test_large_data_example_reduces_a_million_elements(backend: str) -> None:
    pkg: Any = generated_package("large_data")

    async def main() -> tuple[Any, Any, UnifiedBuffer]:
        async with RingKernelRuntime(pkg, backend=backend) as rt:
            await rt.launch("reduce")
            buf = rt.unified_buffer(1_000_000, np.float64)
            buf.host[:] = np.random.default_rng(1).normal(size=1_000_000)
            req = pkg.GoodRequest(buffer=buf.ref, size=1_000_000)
            got = await rt.request("reduce", req, timeout=30.0)
            assert buf.state is BufferState.DEVICE_DIRTY  # until the host looks again
            return got, pkg.reduce(req), buf

    got, want, _ = asyncio.run(main())
    assert got.found and got.maximum == want.maximum
    assert got.total == pytest.approx(want.total, rel=1e-9, abs=1e-6)


def test_unregistered_buffer_is_not_found_by_the_kernel() -> None:
    pkg: Any = generated_package("large_data")

    async def main() -> tuple[Any, Any]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("reduce")
            stray = UnifiedBuffer(10, np.float64)  # never registered with this runtime
            resp = await rt.request("reduce", pkg.GoodRequest(buffer=stray.ref, size=10),
                                    timeout=5.0)
            return resp, rt.telemetry("reduce")

    resp, telemetry = asyncio.run(main())
    assert resp.found is False and telemetry.errors == 1
