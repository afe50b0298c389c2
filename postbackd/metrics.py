"""Prometheus collectors of one daemon, in their own registry (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The daemon's counters and gauges; `render()` gives the text exposition for /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_received = Counter(
            "postbackd_events_received",
            "Events accepted by a source (new or duplicate)",
            ["source"],
            registry=r,
        )
        self.events_rejected = Counter(
            "postbackd_events_rejected",
            "Events refused by a source",
            ["source", "reason"],
            registry=r,
        )
        self.events_unmatched = Counter(
            "postbackd_events_unmatched", "Events that matched no active trigger", registry=r
        )
        self.deliveries = Counter(
            "postbackd_deliveries",
            "Delivery attempts by outcome",
            ["plugin", "customer", "outcome"],
            registry=r,
        )
        self.delivery_duration = Histogram(
            "postbackd_delivery_duration_seconds",
            "Time of one delivery attempt",
            ["plugin"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.spool_deliveries = Gauge(
            "postbackd_spool_deliveries",
            "Deliveries in the spool by state",
            ["state"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "postbackd_oldest_pending_seconds", "Age of the oldest pending delivery", registry=r
        )
        self.sla_timers_pending = Gauge(
            "postbackd_sla_timers_pending",
            "[[sla]] delay timers still waiting (orders that may yet be late)",
            registry=r,
        )
        self.breakers_open = Gauge(
            "postbackd_breakers_open", "Destinations behind an open circuit breaker", registry=r
        )
        self.config_reloads = Counter(
            "postbackd_config_reloads", "Configuration reloads by result", ["result"], registry=r
        )
        for result in ("applied", "rejected"):  # shown as 0 before the first reload
            self.config_reloads.labels(result)
        self.config_generation = Gauge(
            "postbackd_config_generation",
            "Generation number of the running configuration",
            registry=r,
        )
        self.sources_ready = Gauge(
            "postbackd_source_ready",
            "1 when a source is connected and consuming",
            ["source"],
            registry=r,
        )

        self.alerts = Counter(
            "postbackd_alerts",
            "Operational alerts raised, by type and outcome: stored (routed to a trigger), "
            "duplicate (the episode was raised before), unrouted (no trigger), dropped",
            ["type", "outcome"],
            registry=r,
        )
        self.source_restarts = Counter(
            "postbackd_source_restarts",
            "Sources started again after their start raised or their task ended",
            ["source"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
