"""Replay of audit histories: clean histories match, any altered field is caught, gaps are
reported rather than guessed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.contracts.codec import decode_event, decode_record, encode_record
from pipeline.contracts.events import AgentEvent, Source
from pipeline.core.arbitration import decide
from pipeline.core.decision import DUPLICATE, MERGED, RECORDED, SUPPRESSED
from pipeline.core.policy import DEFAULT_POLICY, FrequencyCap, Policy
from pipeline.core.replay import (
    MATCH,
    MISMATCH,
    NOT_DECISIONS,
    UNREPLAYABLE,
    UNRESOLVED,
    catalog,
    replay_all,
    replay_customer,
    summarize,
)
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.processing.records import audit_record
from tests.factories import T0, consent, proposal

Record = dict[str, Any]


def audit_history(events: list[AgentEvent], policy: Policy = DEFAULT_POLICY) -> list[Record]:
    """What the worker would have written: decided in order, Avro round-tripped."""
    states: dict[str, CustomerState] = {}
    out = []
    for offset, ev in enumerate(events):
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
        rec = audit_record(d, ev, Source("agent-events", 0, offset, ev.occurred_at), T0)
        out.append(decode_record("audit_record", encode_record("audit_record", rec)))
    return out


def story(customer: str = "c1") -> list[AgentEvent]:
    """Approved, merged, suppressed by the cap, duplicate, a signal: every kind of decision."""
    first = proposal(customer, T0, trigger="cart:1", channel="sms", category="service")
    return [
        consent(True, customer=customer, at=T0 - 1),
        first,
        proposal(customer, T0 + 1, trigger="cart:1", channel="sms", category="service"),
        *(proposal(customer, T0 + 10 + i, channel="sms", category="service") for i in range(3)),
        first,  # the same event again: a replay
    ]


HISTORY = audit_history(story("c1") + story("c2"))
RESOLVE = catalog([])


def test_story_covers_every_kind_of_decision() -> None:
    outcomes = {r["outcome"] for r in HISTORY}
    assert {"approved", MERGED, SUPPRESSED, DUPLICATE, RECORDED} <= outcomes


def test_clean_history_matches() -> None:
    results = replay_all(HISTORY, RESOLVE)
    assert [r.status for r in results] == [MATCH] * len(HISTORY)
    assert [r.decision_id for r in results] == [r["decision_id"] for r in HISTORY]
    s = summarize(results)
    assert (s.replayed, s.matched, s.mismatched, s.unresolved) == (len(HISTORY), len(HISTORY), 0, 0)
    assert s.ok


def test_policy_changes_and_console_actions_are_no_decisions_to_replay() -> None:
    others = [{**HISTORY[0], "kind": k, "customer_id": "-", "input": "{}"} for k in NOT_DECISIONS]
    results = replay_all([*others, *HISTORY], RESOLVE)
    assert [r.status for r in results] == [MATCH] * len(HISTORY)
    assert {"policy", "console"} == NOT_DECISIONS


def _set(**changes: Any) -> Callable[[Record], Record]:
    return lambda r: {**r, **changes}


def _trace_reason(r: Record) -> Record:
    trace = [dict(s) for s in r["trace"]]
    trace[-1]["reason"] += " (edited)"
    return {**r, "trace": trace}


def _with(outcome: str) -> int:
    return next(i for i, r in enumerate(HISTORY) if r["outcome"] == outcome)


ALTERATIONS = [
    # (what, index of the altered record, alteration, field expected to differ)
    ("outcome flipped", _with("approved"), _set(outcome="suppressed"), "outcome"),
    ("outcome flipped back", _with(SUPPRESSED), _set(outcome="approved"), "outcome"),
    ("reason reworded", _with(SUPPRESSED), _set(reason="because"), "reason"),
    ("action id changed", _with("approved"), _set(action_id="a-forged"), "action_id"),
    ("action id dropped", _with("approved"), _set(action_id=None), "action_id"),
    ("rule changed", _with(SUPPRESSED), _set(rule="consent"), "rule"),
    ("merged elsewhere", _with(MERGED), _set(merged_into="d-other"), "merged_into"),
    ("trace edited", _with(MERGED), _trace_reason, "trace"),
]


@pytest.mark.parametrize(
    ("index", "alter", "field"),
    [a[1:] for a in ALTERATIONS],
    ids=[a[0] for a in ALTERATIONS],
)
def test_an_altered_record_is_the_only_mismatch(
    index: int, alter: Callable[[Record], Record], field: str
) -> None:
    records = list(HISTORY)
    records[index] = alter(records[index])
    results = replay_all(records, RESOLVE)
    assert [i for i, r in enumerate(results) if r.status != MATCH] == [index]
    bad = results[index]
    assert bad.status == MISMATCH and field in bad.differences
    assert bad.recorded[field] == comparable_field(records[index], field)
    assert bad.recomputed is not None
    assert bad.recomputed[field] == comparable_field(HISTORY[index], field)
    assert not summarize(results).ok


def comparable_field(record: Record, field: str) -> Any:
    return [dict(s) for s in record["trace"]] if field == "trace" else record[field]


def test_unknown_policy_version_is_reported_and_stops_that_customer_only() -> None:
    records = list(HISTORY)
    records[2] = {**records[2], "policy_version": "9.9.9+000000000000"}
    results = replay_all(records, RESOLVE)
    c1 = [r for r in results if r.customer_id == "c1"]
    assert c1[2].status == UNRESOLVED and "9.9.9+000000000000" in c1[2].detail
    assert [r.status for r in c1[:2]] == [MATCH, MATCH]
    # the state after an unknown decision is unknown: later c1 decisions cannot be checked
    assert {r.status for r in c1[3:]} == {UNREPLAYABLE}
    assert {r.status for r in results if r.customer_id == "c2"} == {MATCH}
    s = summarize(results)
    assert (s.unresolved, s.unresolved_versions, s.mismatched) == (1, ("9.9.9+000000000000",), 0)


def test_decisions_are_replayed_under_the_policy_version_they_name() -> None:
    strict = Policy(caps=(FrequencyCap("one-a-day", limit=1, window_ms=86_400_000),))
    records = audit_history(story(), strict)
    assert {r["policy_version"] for r in records} == {strict.policy_version}
    assert {r.status for r in replay_customer(records, catalog([strict]))} == {MATCH}
    assert {r.status for r in replay_customer(records, catalog([]))} == {
        UNRESOLVED,
        UNREPLAYABLE,
    }


def test_a_decision_replayed_without_its_history_is_not_the_same() -> None:
    """Why the whole history is replayed: the duplicate needs the first decision."""
    c1 = [r for r in HISTORY if r["customer_id"] == "c1"]
    alone = replay_customer(c1[-1:], RESOLVE)
    assert alone[0].status == MISMATCH and alone[0].recorded["outcome"] == DUPLICATE


def test_undecodable_input_is_reported_not_raised() -> None:
    c1 = [r for r in HISTORY if r["customer_id"] == "c1"]
    c1[1] = {**c1[1], "input": "{not json"}
    statuses = [r.status for r in replay_customer(c1, RESOLVE)]
    assert statuses[:2] == [MATCH, UNREPLAYABLE] and set(statuses[2:]) == {UNREPLAYABLE}


def _event(record: Record) -> AgentEvent:
    return decode_event(record["customer_id"].encode(), record["input"].encode())


def _reemitted_as_duplicate(record: Record) -> Record:
    """What a worker whose state was already saved writes when it reads the record again."""
    event = _event(record)
    saved = decide(EMPTY_STATE, event, DEFAULT_POLICY, record["decided_at"])[1]
    d, _ = decide(saved, event, DEFAULT_POLICY, record["decided_at"])
    assert d.outcome == DUPLICATE
    position = (record["source_topic"], record["source_partition"], record["source_offset"])
    return audit_record(d, event, Source(*position, 0), T0)


REEMISSIONS = [
    # (what, how the copy of an earlier record is made, expected status of the copy)
    ("identical copy", lambda r: dict(r), MATCH),
    ("re-decided from a saved state", _reemitted_as_duplicate, MATCH),
    ("copy with a flipped outcome", _set(outcome="suppressed"), MISMATCH),
    ("copy with another action id", _set(action_id="a-forged"), MISMATCH),
]


@pytest.mark.parametrize(
    ("copy", "expected"), [r[1:] for r in REEMISSIONS], ids=[r[0] for r in REEMISSIONS]
)
def test_reemitted_records_match_either_legitimate_answer(
    copy: Callable[[Record], Record], expected: str
) -> None:
    """At-least-once: a restarted worker may write a record's decision again, later."""
    c1 = [r for r in HISTORY if r["customer_id"] == "c1"]
    first = next(i for i, r in enumerate(c1) if r["outcome"] == "approved")
    at = first + 2  # later decisions follow the copy: it must not disturb their state
    records = [*c1[:at], copy(c1[first]), *c1[at:]]
    results = replay_customer(records, RESOLVE)
    assert results[at].reemitted and results[at].status == expected
    assert {r.status for i, r in enumerate(results) if i != at} == {MATCH}


def test_replay_does_not_depend_on_other_customers_interleaving() -> None:
    c1 = [r for r in HISTORY if r["customer_id"] == "c1"]
    c2 = [r for r in HISTORY if r["customer_id"] == "c2"]
    interleaved = [r for pair in zip(c2, c1, strict=True) for r in pair]
    assert {r.status for r in replay_all(interleaved, RESOLVE)} == {MATCH}


def test_catalog_knows_the_default_and_given_policies_only() -> None:
    other = dataclasses.replace(DEFAULT_POLICY, merge_window_ms=1)
    resolve = catalog([other])
    assert resolve(DEFAULT_POLICY.policy_version) is DEFAULT_POLICY
    assert resolve(other.policy_version) is other
    assert resolve("1.0.0+ffffffffffff") is None
