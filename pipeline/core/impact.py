"""What the experiments show, from the audit log alone: exposed customers per arm, the
outcomes inside each customer's attribution window, and the lift with its interval.

The audit topic is the source of truth (`tower report` reads it): each approved, deferred
or withheld proposal names its arms, and each signal's record carries the input. Counting
follows the in-stream counters (`experiments.outcomes_of`), per customer instead of per
signal: a proportion metric is the share of exposed customers with at least one such
outcome in their window; revenue is the mean per exposed customer (0 without a purchase);
CSAT is the mean of each responding customer's scores, over the responders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from pipeline.core import experiments as ex
from pipeline.core import lift_stats
from pipeline.core.decision import APPROVED, DEFERRED, WITHHELD
from pipeline.core.experience import DEFAULT_EXPERIENCE
from pipeline.core.policy import DEFAULT_POLICY, Policy

#: Metrics of the report, in its order, and whether higher is better.
PROPORTIONS: Final = (ex.CONVERSION, ex.UNSUBSCRIBE, ex.COMPLAINT, ex.REPEAT_CONTACT)
MEANS: Final = (ex.REVENUE, ex.CSAT)
METRICS: Final = (
    ex.CONVERSION,
    ex.REVENUE,
    ex.UNSUBSCRIBE,
    ex.COMPLAINT,
    ex.REPEAT_CONTACT,
    ex.CSAT,
)
HIGHER_IS_BETTER: Final = frozenset({ex.CONVERSION, ex.REVENUE, ex.CSAT})
#: Welch's interval needs a few values per arm: below df 3 its t quantile is too short.
MIN_FOR_MEANS: Final = 5

REPEAT_WINDOW_MS: Final = DEFAULT_EXPERIENCE.repeat_window_ms

_EXPOSING: Final = frozenset({APPROVED, DEFERRED, WITHHELD})
_CONTACTS: Final = frozenset({"message_received", "case_opened"})

PolicyLookup = Callable[[str], Policy | None]


@dataclass(slots=True)
class Window:
    """One customer's exposure to one experiment, and what happened inside its window."""

    arm: str
    start: int
    end: int
    flags: set[str] = field(default_factory=set)  # proportion metrics seen
    revenue: float = 0.0
    csat: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Customer:
    windows: dict[str, Window] = field(default_factory=dict)  # experiment -> window
    resolved_at: int | None = None  # for repeat contacts, as the experience metrics count


class ImpactLedger:
    """Audit records in, report rows out; feed records in topic order (per customer)."""

    def __init__(self, policy_of: PolicyLookup = lambda _v: None) -> None:
        self._policy_of = policy_of
        self._policies: dict[str, Policy] = {}
        self._customers: dict[str, _Customer] = {}
        self.experiments: dict[str, tuple[str, str]] = {}  # name -> (treatment, control arm)
        self.records = 0
        self.unknown_policies: set[str] = set()

    def _policy(self, version: str) -> Policy:
        policy = self._policies.get(version)
        if policy is None:
            found = self._policy_of(version)
            if found is None:
                self.unknown_policies.add(version)
            policy = self._policies[version] = found or DEFAULT_POLICY
        return policy

    def add(self, record: Mapping[str, Any]) -> None:
        self.records += 1
        kind = record.get("kind")
        if kind == "proposal":
            arms = record.get("experiments") or ()
            if arms and record.get("outcome") in _EXPOSING:
                self._expose(record, arms)
        elif kind == "signal" and record.get("outcome") == "recorded":
            self._signal(record)

    def _expose(self, record: Mapping[str, Any], arms: Iterable[Mapping[str, str]]) -> None:
        customer = self._customers.setdefault(str(record["customer_id"]), _Customer())
        at = int(record["decided_at"])
        window_ms = self._policy(
            str(record.get("policy_version"))
        ).experiments.attribution_window_ms
        for arm in arms:
            name, which = arm["experiment"], arm["arm"]
            if name not in self.experiments:
                control = ex.CONTROL if name == ex.CONTROL_GROUP else ex.HELD_OUT
                self.experiments[name] = (ex.TREATMENT, control)
            if name not in customer.windows:  # the first exposure starts the window
                customer.windows[name] = Window(which, at, at + window_ms)

    def _signal(self, record: Mapping[str, Any]) -> None:
        customer = self._customers.get(str(record["customer_id"]))
        if customer is None:
            return  # never exposed: nothing to attribute
        try:
            signal = orjson.loads(record["input"])["signal"]
            kind, attrs = str(signal["type"]), signal.get("attributes") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        at = int(record["decided_at"])
        repeat = False
        if kind in _CONTACTS:
            since = customer.resolved_at
            repeat = since is not None and since <= at < since + REPEAT_WINDOW_MS
            customer.resolved_at = None
        elif kind == "case_resolved":
            customer.resolved_at = at
        policy = self._policy(str(record.get("policy_version")))
        found = ex.outcomes_of(kind, attrs, policy.service_first.sentiment_threshold, repeat)
        for window in customer.windows.values():
            if not window.start <= at < window.end:
                continue
            for metric, value in found:
                if metric == ex.REVENUE:
                    window.revenue += value or 0.0
                elif metric == ex.CSAT:
                    window.csat.append(value or 0.0)
                else:
                    window.flags.add(metric)

    def rows(self) -> list[dict[str, Any]]:
        """One row per experiment and metric (experiments in the order first seen)."""
        out: list[dict[str, Any]] = []
        for name, (arm_t, arm_c) in self.experiments.items():
            windows = [c.windows[name] for c in self._customers.values() if name in c.windows]
            t = [w for w in windows if w.arm == arm_t]
            c = [w for w in windows if w.arm == arm_c]
            for metric in METRICS:
                out.append(_row(name, metric, arm_t, arm_c, t, c))
        return out


def _row(
    experiment: str, metric: str, arm_t: str, arm_c: str, t: list[Window], c: list[Window]
) -> dict[str, Any]:
    interval: lift_stats.Interval | None
    if metric in PROPORTIONS:
        x_t = sum(metric in w.flags for w in t)
        x_c = sum(metric in w.flags for w in c)
        n_t, n_c = len(t), len(c)
        treatment = x_t / n_t if n_t else None
        control = x_c / n_c if n_c else None
        interval = lift_stats.newcombe(x_t, n_t, x_c, n_c)
    else:
        if metric == ex.REVENUE:
            m_t = lift_stats.moments(w.revenue for w in t)
            m_c = lift_stats.moments(w.revenue for w in c)
        else:  # CSAT: each responder's mean score
            m_t = lift_stats.moments(sum(w.csat) / len(w.csat) for w in t if w.csat)
            m_c = lift_stats.moments(sum(w.csat) / len(w.csat) for w in c if w.csat)
        n_t, n_c = m_t.n, m_c.n
        treatment = m_t.mean if n_t else None
        control = m_c.mean if n_c else None
        enough = min(n_t, n_c) >= MIN_FOR_MEANS
        interval = lift_stats.welch(m_t, m_c) if enough else None
    return {
        "experiment": experiment,
        "metric": metric,
        "arm_treatment": arm_t,
        "arm_control": arm_c,
        "n_treatment": n_t,
        "n_control": n_c,
        "treatment": treatment,
        "control": control,
        "lift": None if interval is None else interval.estimate,
        "ci_low": None if interval is None else interval.low,
        "ci_high": None if interval is None else interval.high,
        "verdict": lift_stats.verdict(interval, metric in HIGHER_IS_BETTER),
    }
