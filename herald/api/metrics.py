"""`GET /api/v1/metrics`: the processors and the server's loops in the Prometheus text format.

Read at scrape time from the runtimes (no counters are kept twice): per
processor its position, lag behind the log's head, parked events, failures
since the process started and whether it is waiting to retry; per loop
(timers, sender) its failures since start and in a row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from herald.api.wiring import Herald

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HeraldCollector(Collector):
    def __init__(self, herald: Herald) -> None:
        self.herald = herald

    def collect(self) -> Iterator[Metric]:
        head = self.herald.store.head_position()
        yield GaugeMetricFamily(
            "herald_log_head_position", "The global position of the log's last event", head
        )
        families = {
            key: kind(name, text, labels=["processor"]) for key, (kind, name, text) in _PROCESSOR.items()
        }
        for runtime in self.herald.runtimes():
            for status in runtime.status():
                values = {
                    "position": status.position,
                    "lag": head - status.position,
                    "parked": status.parked,
                    "failures": status.failures_total,
                    "retrying": int(status.failing_at is not None),
                }
                for key, value in values.items():
                    families[key].add_metric([status.name], value)
        yield from families.values()
        failures = CounterMetricFamily(
            "herald_loop_failures", "Failures of the loop since it started", labels=["loop"]
        )
        in_a_row = GaugeMetricFamily(
            "herald_loop_failing", "Failures of the loop in a row (0: healthy)", labels=["loop"]
        )
        for name, backoff in self.herald.loops.items():
            failures.add_metric([name], backoff.failures_total)
            in_a_row.add_metric([name], backoff.failures)
        yield failures
        yield in_a_row


_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
_PROCESSOR: dict[str, tuple[_Family, str, str]] = {
    "position": (
        GaugeMetricFamily,
        "herald_processor_position",
        "The last log position the processor processed",
    ),
    "lag": (
        GaugeMetricFamily,
        "herald_processor_lag_events",
        "Events the processor is behind the log's head",
    ),
    "parked": (
        GaugeMetricFamily,
        "herald_processor_parked_events",
        "Events the processor gave up on and nobody re-drove yet",
    ),
    "failures": (
        CounterMetricFamily,
        "herald_processor_failures",
        "Failures of the processor since the start",
    ),
    "retrying": (
        GaugeMetricFamily,
        "herald_processor_retrying",
        "1 while the processor waits to retry an event",
    ),
}


def metrics_text(herald: Herald) -> bytes:
    """The metrics, now, in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HeraldCollector(herald))
    return generate_latest(registry)
