"""Prometheus exposition of a runtime's figures (the `metrics` extra: prometheus_client).

    from prometheus_client import REGISTRY, start_http_server
    REGISTRY.register(MetricsCollector(runtime))     # a RingKernelRuntime or a SyncRuntime
    start_http_server(9100)

The figures are those of `telemetry()` and `ringgen top`, read on the runtime's loop thread
at each scrape (the scrape runs on prometheus_client's own thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ringgen.errors import RinggenError
from ringgen.runtime.monitor import snapshot

if TYPE_CHECKING:
    from ringgen.runtime.runtime import RingKernelRuntime
    from ringgen.runtime.sync import SyncRuntime

SCRAPE_TIMEOUT_S = 5.0

# name, field of a snapshot row, help: counters (monotonic since launch)
_COUNTERS = (
    ("messages_sent", "sent", "Messages accepted by send, send_many, send_array and request"),
    ("messages_received", "received", "Responses handed to callers"),
    ("messages_processed", "processed", "Messages the kernel finished"),
    ("messages_dropped", "dropped", "Messages dropped by backpressure"),
    ("handler_errors", "errors", "Handler errors"),
    ("dead_letters", "dead_letters", "Dead letters of every reason"),
    ("restarts", "restarts", "Supervised restarts (launch(restart='on_failure'))"),
)
# gauges: name, field, help, scale
_GAUGES = (
    ("queue_depth", "queue_depth", "Messages waiting in the host backlog and the lanes", 1.0),
    ("in_flight", "in_flight", "Messages accepted and not yet processed or dropped", 1.0),
    ("latency_p50_seconds", "latency_p50_us", "Median request round trip", 1e-6),
    ("latency_p99_seconds", "latency_p99_us", "99th percentile request round trip", 1e-6),
)


class MetricsCollector:
    """A prometheus_client collector: register it with a CollectorRegistry."""

    def __init__(self, runtime: RingKernelRuntime | SyncRuntime, prefix: str = "ringgen") -> None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError as e:
            raise RinggenError("MetricsCollector needs prometheus_client: "
                               "pip install 'ringgen[metrics]'") from e
        from ringgen.runtime.sync import SyncRuntime

        self._runtime = runtime.runtime if isinstance(runtime, SyncRuntime) else runtime
        self._prefix = prefix

    def _snapshot(self) -> dict[str, Any]:
        loop = self._runtime.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return snapshot(self._runtime)

        async def take() -> dict[str, Any]:
            return snapshot(self._runtime)
        return asyncio.run_coroutine_threadsafe(take(), loop).result(SCRAPE_TIMEOUT_S)

    def describe(self) -> Iterator[Any]:
        """The families without samples: registering takes no snapshot."""
        return self._families([])

    def collect(self) -> Iterator[Any]:
        return self._families(self._snapshot()["kernels"])

    def _families(self, rows: list[dict[str, Any]]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["kernel", "backend"]
        for name, key, doc in _COUNTERS:
            family = CounterMetricFamily(f"{self._prefix}_{name}", doc, labels=labels)
            for row in rows:
                family.add_metric([row["kernel_id"], row["backend"]], row[key])
            yield family
        for name, key, doc, scale in _GAUGES:
            gauge = GaugeMetricFamily(f"{self._prefix}_{name}", doc, labels=labels)
            for row in rows:
                if row[key] is not None:
                    gauge.add_metric([row["kernel_id"], row["backend"]], row[key] * scale)
            yield gauge
        state = GaugeMetricFamily(f"{self._prefix}_kernel_state",
                                  "1 for the state each kernel is in", labels=[*labels, "state"])
        for row in rows:
            state.add_metric([row["kernel_id"], row["backend"], row["state"]], 1.0)
        yield state
