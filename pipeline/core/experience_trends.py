"""The experience metrics over time, from the audit log: each record's decision replayed
through the worker's own `experience.observe`, per customer and in topic order, and the
observations summed into one-minute buckets of processing time.

The worker applies the same observations to Prometheus as they happen; this ledger gives
the journey owner the same numbers, with their trend, from the audit topic alone. The
definitions are `experience.py`'s (see its docstring); the metrics shown are:

- containment: contained / resolved AI conversations, with the mean CSAT of contained
  and of not-contained conversations beside it;
- repeat contacts: repeat contacts per resolution;
- sentiment shift: mean shift after an AI action;
- time to resolution: mean seconds from first touch to resolution;
- channel switching: switches per touchpoint of an open conversation;
- cost to serve: nominal cost summed;
- assisted conversion: purchases after an AI action, as a share of all purchases;
- churn risk: churn-risk signals (low sentiment or CSAT after an AI action).

An input kept only minimised (or not at all) cannot be replayed and is counted as skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import add
from typing import Any, Final

from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core import experience as ex
from pipeline.core.decision import APPROVED, DEFERRED, ESCALATED, ApprovedAction, Decision
from pipeline.core.policy import DAY_MS
from pipeline.core.state import EMPTY_JOURNEY, Journey

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
#: buckets kept: two weeks, so a week can be compared with the week before
KEEP_MS: Final = 14 * DAY_MS

#: accumulator slots of one bucket
SLOTS: Final = (
    "resolved_ai",
    "contained",
    "csat_contained_sum",
    "csat_contained_n",
    "csat_other_sum",
    "csat_other_n",
    "resolutions",
    "repeat_contacts",
    "sentiment_shift_sum",
    "sentiment_shift_n",
    "ttr_sum",
    "ttr_n",
    "channel_switches",
    "touchpoints",
    "cost",
    "purchases",
    "assisted_purchases",
    "churn_risk",
    "replayed",
)
_SLOT: Final = {name: i for i, name in enumerate(SLOTS)}


@dataclass(frozen=True, slots=True)
class Metric:
    """How a metric's value comes from a bucket's slots: `num / den`, or `num` alone."""

    name: str
    label: str
    num: str
    den: str | None
    unit: str  # share | seconds | score | count | currency
    higher_is_better: bool | None


_M = Metric
METRICS: Final = (
    _M("containment", "Containment", "contained", "resolved_ai", "share", True),
    _M("csat_contained", "CSAT, contained", "csat_contained_sum", "csat_contained_n", "score",
       True),
    _M("csat_not_contained", "CSAT, not contained", "csat_other_sum", "csat_other_n", "score",
       True),
    _M("repeat_contacts", "Repeat contacts per resolution", "repeat_contacts", "resolutions",
       "share", False),
    _M("sentiment_shift", "Sentiment shift after AI", "sentiment_shift_sum", "sentiment_shift_n",
       "score", True),
    _M("time_to_resolution", "Time to resolution", "ttr_sum", "ttr_n", "seconds", False),
    _M("channel_switching", "Channel switches per touchpoint", "channel_switches", "touchpoints",
       "share", False),
    _M("cost_to_serve", "Cost to serve", "cost", None, "currency", False),
    _M("assisted_conversion", "Assisted conversion", "assisted_purchases", "purchases", "share",
       True),
    _M("churn_risk", "Churn-risk signals", "churn_risk", None, "count", False),
)  # fmt: skip
BY_NAME: Final = {m.name: m for m in METRICS}


def decision_of(record: Mapping[str, Any], event: AgentEvent) -> Decision:
    """The parts of the recorded decision `observe` reads: outcome, rule and, for an
    emitted proposal, the action that went out (an escalation goes out as `route_case`)."""
    outcome = str(record.get("outcome") or "")
    action = None
    p = event.proposal
    if p is not None and outcome in (APPROVED, DEFERRED, ESCALATED):
        action = ApprovedAction(
            action_id=str(record.get("action_id") or ""),
            decision_id=str(record.get("decision_id") or ""),
            customer_id=event.customer_id,
            channel=event.channel,
            action="route_case" if outcome == ESCALATED else p.action,
            category=p.category,
            content=None,
            offer_id=None,
            offer_value=None,
            conversation_id=event.conversation_id,
            asserts={},
            source_event_ids=(event.event_id,),
            agents=(event.agent,),
            decided_at=int(record.get("decided_at") or 0),
            not_before=None,
            policy_version=str(record.get("policy_version") or ""),
        )
    return Decision(
        decision_id=str(record.get("decision_id") or ""),
        event_id=event.event_id,
        customer_id=event.customer_id,
        outcome=outcome,
        rule=record.get("rule"),
        reason="",
        trace=(),
        policy_version=str(record.get("policy_version") or ""),
        decided_at=int(record.get("decided_at") or 0),
        action=action,
    )


def _touchpoint(event: AgentEvent, outcome: str) -> bool:
    """A touchpoint of a conversation, as `experience._touch` counts channel switches."""
    if not event.channel:
        return False
    if event.proposal is not None:
        return event.conversation_id is not None and outcome in (APPROVED, DEFERRED, ESCALATED)
    return event.signal is not None and event.signal.type == "message_received"


class ExperienceTrends:
    """Audit records in (topic order per customer), metric values per time window out."""

    def __init__(
        self, settings: ex.ExperienceSettings = ex.DEFAULT_EXPERIENCE, keep_ms: int = KEEP_MS
    ) -> None:
        self.settings = settings
        self.keep_ms = keep_ms
        self._journeys: dict[str, Journey] = {}
        #: slots per minute and per hour of processing time (the hours sum long windows)
        self._buckets: dict[int, list[float]] = {}
        self._hours: dict[int, list[float]] = {}
        self.records = 0
        #: records whose input could not be replayed (minimised, missing or invalid)
        self.skipped = 0
        self.latest = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """One audit record: `customer_id`, `kind`, `outcome`, `input`, `processed_at`, ..."""
        self.records += 1
        if record.get("kind") not in ("proposal", "signal"):
            return
        text, customer = record.get("input"), record.get("customer_id")
        at = int(record.get("processed_at") or 0)
        if not text or not customer:
            self.skipped += 1
            return
        try:
            event = decode_event(str(customer).encode(), str(text).encode())
        except InvalidEvent:
            self.skipped += 1
            return
        journey = self._journeys.get(event.customer_id, EMPTY_JOURNEY)
        decision = decision_of(record, event)
        journey, observations = ex.observe(journey, event, decision, self.settings)
        if journey is EMPTY_JOURNEY:
            self._journeys.pop(event.customer_id, None)
        else:
            self._journeys[event.customer_id] = journey
        delta = empty_slots()
        delta[_SLOT["replayed"]] = 1
        if _touchpoint(event, decision.outcome):
            delta[_SLOT["touchpoints"]] = 1
        tally(delta, observations)
        minute = at - at % MINUTE_MS
        for buckets, start in ((self._buckets, minute), (self._hours, at - at % HOUR_MS)):
            bucket = buckets.get(start)
            buckets[start] = delta if bucket is None else list(map(add, bucket, delta))
        if minute > self.latest:
            self.latest = minute
            self._prune(minute - self.keep_ms)

    def _prune(self, horizon: int) -> None:
        """Drop the minutes before `horizon`, and the hours wholly before it (the buckets
        are never changed in place, so a minute and its hour may share a first list)."""
        for buckets, keep in ((self._buckets, horizon), (self._hours, horizon - HOUR_MS + 1)):
            for old in [t for t in buckets if t < keep]:
                del buckets[old]

    def totals(self, since: int, until: int) -> list[float]:
        """The slots summed over the minutes in `since <= t < until`: whole hours from the
        hourly sums, the edges minute by minute (a week is a few hundred lookups)."""
        out = empty_slots()
        first = -(-since // MINUTE_MS) * MINUTE_MS
        h0, h1 = -(-first // HOUR_MS) * HOUR_MS, until - until % HOUR_MS
        if h0 >= h1:
            h0 = h1 = until
        spans = ((self._buckets, first, h0, MINUTE_MS), (self._hours, h0, h1, HOUR_MS))
        for buckets, start, end, step in (
            *spans,
            (self._buckets, max(h1, first), until, MINUTE_MS),
        ):
            for t in range(start, end, step):
                bucket = buckets.get(t)
                if bucket is not None:
                    out = list(map(add, out, bucket))
        return out

    def series(self, since: int, until: int, step: int) -> list[list[float]]:
        """The slots summed per `step` from `since` (every step present: empty ones are zeros)."""
        n = max(0, -(-(until - since) // step))
        return [self.totals(since + i * step, min(since + (i + 1) * step, until)) for i in range(n)]


def tally(bucket: list[float], observations: Iterable[ex.Observation]) -> None:
    """Add observations to a bucket's slots (those of the metrics shown; others are not kept)."""
    for o in observations:
        labels = dict(o.labels)
        if o.name == ex.CONVERSATIONS_RESOLVED:
            bucket[_SLOT["resolved_ai"]] += 1
            if labels.get("contained") == "true":
                bucket[_SLOT["contained"]] += 1
        elif o.name == ex.CSAT_SCORE:
            side = "contained" if labels.get("contained") == "true" else "other"
            bucket[_SLOT[f"csat_{side}_sum"]] += o.value
            bucket[_SLOT[f"csat_{side}_n"]] += 1
        elif o.name == ex.RESOLUTIONS:
            bucket[_SLOT["resolutions"]] += 1
        elif o.name == ex.REPEAT_CONTACTS:
            bucket[_SLOT["repeat_contacts"]] += 1
        elif o.name == ex.SENTIMENT_SHIFT:
            bucket[_SLOT["sentiment_shift_sum"]] += o.value
            bucket[_SLOT["sentiment_shift_n"]] += 1
        elif o.name == ex.TIME_TO_RESOLUTION:
            bucket[_SLOT["ttr_sum"]] += o.value
            bucket[_SLOT["ttr_n"]] += 1
        elif o.name == ex.CHANNEL_SWITCHES:
            bucket[_SLOT["channel_switches"]] += 1
        elif o.name == ex.COST_TO_SERVE:
            bucket[_SLOT["cost"]] += o.value
        elif o.name == ex.PURCHASES:
            bucket[_SLOT["purchases"]] += 1
            if labels.get("assisted") == "true":
                bucket[_SLOT["assisted_purchases"]] += 1
        elif o.name == ex.CHURN_RISK:
            bucket[_SLOT["churn_risk"]] += 1


def empty_slots() -> list[float]:
    return [0.0] * len(SLOTS)


def replayed(slots: list[float]) -> int:
    """How many records were replayed into these slots (0: the window has no data at all,
    so its counts say nothing, rather than zero)."""
    return int(slots[_SLOT["replayed"]])


def value(metric: Metric, slots: list[float]) -> float | None:
    """The metric's value from summed slots; None when it has no denominator yet."""
    num = slots[_SLOT[metric.num]]
    if metric.den is None:
        return num
    den = slots[_SLOT[metric.den]]
    return num / den if den else None


def trend(current: float | None, previous: float | None) -> float | None:
    """The change from the previous window to this one (None if either has no value)."""
    if current is None or previous is None:
        return None
    return current - previous
