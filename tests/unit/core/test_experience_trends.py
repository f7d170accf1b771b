"""The experience metrics replayed from audit records equal what the worker observed live,
and their windows, trends and zero-filled series."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.events import AgentEvent, Source
from pipeline.core import experience_trends as xt
from pipeline.core.arbitration import decide
from pipeline.core.experience import Observation, observe
from pipeline.core.policy import DAY_MS, AuditLevels, Policy
from pipeline.core.state import EMPTY_STATE
from pipeline.processing.records import audit_record
from tests.factories import T0, consent, proposal, signal

POLICY = Policy(caps=())
S = 1000
M = xt.MINUTE_MS


def answer(at: int, conv: str = "k1", channel: str = "chat", customer: str = "c1") -> AgentEvent:
    ev = proposal(
        customer, at=at, agent="care-bot", department="service", action="answer",
        category="service", ai_generated=True,
    )  # fmt: skip
    return replace(ev, conversation_id=conv, channel=channel)


def msg(at: int, conv: str = "k1", channel: str = "chat", customer: str = "c1") -> AgentEvent:
    return replace(
        signal("message_received", customer, at=at), conversation_id=conv, channel=channel
    )


def sig(kind: str, at: int, customer: str = "c1", **attrs: str) -> AgentEvent:
    return signal(kind, customer, at=at, **attrs)


def live(events: list[AgentEvent]) -> tuple[list[Observation], list[dict]]:
    """What the worker does (decide, observe) and the audit records it writes."""
    states: dict[str, object] = {}
    seen: list[Observation] = []
    records = []
    for i, ev in enumerate(events):
        state = states.get(ev.customer_id, EMPTY_STATE)
        decision, state = decide(state, ev, POLICY, ev.occurred_at)  # type: ignore[arg-type]
        journey, observations = observe(state.journey, ev, decision)
        states[ev.customer_id] = state.evolve(journey=journey)
        seen.extend(observations)
        records.append(audit_record(decision, ev, Source("agent-events", 0, i), ev.occurred_at))
    return seen, records


JOURNEYS = {
    "contained, csat, purchase": [
        msg(T0), answer(T0 + S), sig("case_resolved", T0 + 60 * S, case_id="k1"),
        sig("csat", T0 + 2 * M, score="5"), sig("purchase", T0 + 3 * M, amount="30"),
    ],
    "handed off, low csat, repeat": [
        msg(T0), answer(T0 + S), sig("handoff_to_human", T0 + 2 * S),
        sig("case_resolved", T0 + 60 * S), sig("csat", T0 + 2 * M, score="1"),
        msg(T0 + 3 * M, conv="k2"),
    ],
    "channel switch and sentiment": [
        sig("sentiment", T0, score="0.4"), msg(T0 + S), answer(T0 + 2 * S, channel="email"),
        sig("sentiment", T0 + 3 * S, score="-0.8"), msg(T0 + 4 * S, channel="sms"),
    ],
    "two customers interleaved": [
        msg(T0, customer="a"), msg(T0 + 1, customer="b"), answer(T0 + S, customer="a"),
        answer(T0 + S + 1, customer="b", channel="voice"),
        sig("case_resolved", T0 + 2 * M, customer="b"),
        sig("case_resolved", T0 + 3 * M, customer="a"),
    ],
    "suppressed answer is no AI": [
        consent(False, "chat", "all"), msg(T0 + 1), answer(T0 + S),
        sig("case_resolved", T0 + M),
    ],
}  # fmt: skip


@pytest.mark.parametrize("events", JOURNEYS.values(), ids=list(JOURNEYS))
def test_replayed_from_the_audit_equals_what_the_worker_observed(events: list[AgentEvent]) -> None:
    observations, records = live(events)
    trends = xt.ExperienceTrends()
    for r in records:
        trends.add(r)
    expected = xt.empty_slots()
    xt.tally(expected, observations)
    got = trends.totals(T0 - DAY_MS, T0 + DAY_MS)
    own = {xt.SLOTS.index("touchpoints"), xt.SLOTS.index("replayed")}  # not observations
    assert [v for i, v in enumerate(got) if i not in own] == [
        v for i, v in enumerate(expected) if i not in own
    ]
    assert xt.replayed(got) == len(records)
    assert trends.skipped == 0


@pytest.mark.parametrize(
    ("journey", "metric", "value"),
    [
        ("contained, csat, purchase", "containment", 1.0),
        ("contained, csat, purchase", "csat_contained", 5.0),
        ("contained, csat, purchase", "assisted_conversion", 1.0),
        ("contained, csat, purchase", "time_to_resolution", 60.0),
        ("handed off, low csat, repeat", "containment", 0.0),
        ("handed off, low csat, repeat", "csat_not_contained", 1.0),
        ("handed off, low csat, repeat", "repeat_contacts", 1.0),
        ("handed off, low csat, repeat", "churn_risk", 1.0),
        ("channel switch and sentiment", "sentiment_shift", -1.2),
        ("channel switch and sentiment", "channel_switching", 2 / 3),
        ("two customers interleaved", "containment", 1.0),
        ("suppressed answer is no AI", "containment", None),
        ("suppressed answer is no AI", "cost_to_serve", 0.0),
    ],
)
def test_each_metric_from_its_journey(journey: str, metric: str, value: float | None) -> None:
    trends = xt.ExperienceTrends()
    for r in live(JOURNEYS[journey])[1]:
        trends.add(r)
    got = xt.value(xt.BY_NAME[metric], trends.totals(T0 - DAY_MS, T0 + DAY_MS))
    assert got == (None if value is None else pytest.approx(value))


def test_the_trend_compares_a_window_with_the_one_before() -> None:
    first = JOURNEYS["handed off, low csat, repeat"]
    later = [
        replace(e, occurred_at=e.occurred_at + DAY_MS)
        for e in JOURNEYS["contained, csat, purchase"]
    ]
    trends = xt.ExperienceTrends()
    for r in live([*first, *[replace(e, customer_id="c9") for e in later]])[1]:
        trends.add(r)
    m = xt.BY_NAME["containment"]
    before = xt.value(m, trends.totals(T0, T0 + DAY_MS))
    now = xt.value(m, trends.totals(T0 + DAY_MS, T0 + 2 * DAY_MS))
    assert (before, now, xt.trend(now, before)) == (0.0, 1.0, 1.0)
    assert xt.trend(None, 1.0) is None


def test_series_have_every_bucket_counts_zero_filled_ratios_empty() -> None:
    trends = xt.ExperienceTrends()
    for r in live(JOURNEYS["contained, csat, purchase"])[1]:
        trends.add(r)
    rows = trends.series(T0, T0 + 10 * M, M)
    assert len(rows) == 10
    cost = [xt.value(xt.BY_NAME["cost_to_serve"], r) for r in rows]
    containment = [xt.value(xt.BY_NAME["containment"], r) for r in rows]
    assert cost[0] > 0 and cost[5:] == [0.0] * 5
    assert containment[1] == 1.0 and containment[5:] == [None] * 5


@pytest.mark.parametrize(
    "change",
    [{"input": None}, {"input": "not json"}, {"input": '{"event_id": "x"}'}],
)
def test_inputs_that_cannot_be_replayed_are_counted_not_raised(change: dict) -> None:
    record = live([msg(T0)])[1][0]
    trends = xt.ExperienceTrends()
    trends.add({**record, **change})
    assert (trends.records, trends.skipped) == (1, 1)


def test_a_minimised_input_is_skipped_or_replayed_as_kept() -> None:
    ev = msg(T0)
    decision, _ = decide(EMPTY_STATE, ev, POLICY, T0)
    levels = AuditLevels(input="none")
    record = audit_record(decision, ev, Source("agent-events", 0, 0), T0, levels)
    trends = xt.ExperienceTrends()
    trends.add(record)
    assert trends.records == 1


def test_buckets_older_than_the_horizon_are_dropped() -> None:
    trends = xt.ExperienceTrends(keep_ms=DAY_MS)
    for r in live([sig("purchase", T0), sig("purchase", T0 + 2 * DAY_MS)])[1]:
        trends.add(r)
    purchases = xt.SLOTS.index("purchases")
    assert trends.totals(0, T0 + DAY_MS)[purchases] == 0
    assert trends.totals(0, T0 + 3 * DAY_MS)[purchases] == 1


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 3 * DAY_MS), min_size=1, max_size=40),
    window=st.tuples(st.integers(-DAY_MS, 4 * DAY_MS), st.integers(0, 4 * DAY_MS)),
)
def test_any_window_sums_exactly_its_minutes(offsets: list[int], window: tuple[int, int]) -> None:
    """Whole hours come from the hourly sums, the edges from minutes: the same counts."""
    at = sorted(T0 + o for o in offsets)
    trends = xt.ExperienceTrends()
    for r in live([sig("purchase", t, customer=f"p{i}") for i, t in enumerate(at)])[1]:
        trends.add(r)
    since, until = T0 + window[0], T0 + window[0] + window[1]
    purchases = xt.SLOTS.index("purchases")
    expected = sum(since <= t - t % M < until for t in at)
    assert trends.totals(since, until)[purchases] == expected
    rows = trends.series(since, until, 15 * M)
    assert sum(r[purchases] for r in rows) == expected
