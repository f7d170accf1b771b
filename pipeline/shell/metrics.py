"""Prometheus metrics of the worker. Labels are bounded: no customer ids, ever."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class TowerMetrics:
    """One set of metrics per worker; a private registry keeps tests independent."""

    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_in = Counter(
            "tower_events_in",
            "Input records read, by kind and wire format",
            ["kind", "format"],
            registry=r,
        )
        self.decisions = Counter(
            "tower_decisions",
            "Decisions by outcome and deciding rule",
            ["outcome", "rule"],
            registry=r,
        )
        self.approved = Counter(
            "tower_approved_actions",
            "Actions emitted to channels",
            ["channel", "agent"],
            registry=r,
        )
        self.proposals = Counter(
            "tower_proposals",
            "Proposals decided, by agent (for approval rates)",
            ["agent"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tower_dead_letters",
            "Invalid records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "tower_decision_latency_seconds",
            "Time to decide one batch of events, per event",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
            registry=r,
        )
        self.end_to_end_lag = Histogram(
            "tower_end_to_end_lag_seconds",
            "Wall clock from the record's Kafka timestamp to its decision",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.batch_size = Histogram(
            "tower_batch_size",
            "Records per processed batch",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.policy_info = Gauge(
            "tower_policy_info",
            "The policy version in force (value is always 1)",
            ["policy_version"],
            registry=r,
        )
