"""Per-kernel figures: counts kept by the runtime, device counters read from the kernel, and
round-trip latency (send of a request to the arrival of its correlated response)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Telemetry:
    kernel_id: str
    state: str
    backend: str
    sent: int            # messages accepted by send/send_many/send_array/request
    received: int        # responses handed to callers (receive*, request)
    processed: int       # requests the kernel finished
    dropped: int         # messages dropped by backpressure (see the dead letters)
    errors: int          # handler errors (ctx.fail() on a device, exceptions in host actors)
    queue_depth: int     # waiting in the host backlog plus in the device lanes
    in_flight: int       # sent, not yet processed, not dropped since
    latency_p50_us: float | None
    latency_p99_us: float | None
    # Device kernels under the hang watchdog: seconds since the stillest block's heartbeat last
    # moved, and whether that reached its watchdog_s (a hung handler, or a stopped process).
    heartbeat_age_s: float | None = None
    stalled: bool = False
    restarts: int = 0    # supervised restarts since the user's last launch() of this kernel id
    device: int | None = None  # the device a kernel runs on (launch(..., device=N)); None: host actor
    # The bus meter (CPU backend; 0 elsewhere): what a GPU would send over PCIe for the
    # device side's accesses to host-mapped memory since launch, in transactions of up to 128
    # bytes and in bytes, reads (round trips the kernel waits for) and writes apart. Per
    # message: divide by `processed` (docs/performance.md).
    bus_reads: int = 0
    bus_read_bytes: int = 0
    bus_writes: int = 0
    bus_write_bytes: int = 0


@dataclass
class Counters:
    sent: int = 0
    received: int = 0
    processed: int = 0
    dropped: int = 0
    evicted: int = 0  # accepted, then dead-lettered unprocessed (drop_oldest, terminate, failure)
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def percentiles(self) -> tuple[float | None, float | None]:
        if not self.latencies:
            return None, None
        p50, p99 = np.percentile(np.fromiter(self.latencies, dtype=float), [50, 99]) * 1e6
        return float(p50), float(p99)
