"""The index of recent decisions: the first final decision of an event stays, a held one
is pending until released, each partition is bounded, waiters hear of the decision once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.events import Source
from pipeline.core.decision import APPROVED, DUPLICATE, HELD, SUPPRESSED, Decision
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.processing.decision_index import (
    HELD_BACK,
    SUBMITTED,
    DecisionIndex,
    decision_body,
    iso_millis,
    recorded_body,
)
from pipeline.processing.records import audit_record
from tests.factories import consent, decide_all, proposal


def decided(event_id: str, outcome: str) -> tuple[Decision, object]:
    event = proposal("ana", event_id=event_id)
    decision = Decision.for_event(event, f"d-{event_id}", "v1", 0, outcome, None, "why", ())
    return decision, event


def test_the_first_final_decision_stays_and_a_held_event_is_pending_until_released() -> None:
    index = DecisionIndex()
    heard: list[str] = []
    for event_id, outcome, expected in [
        ("e1", APPROVED, APPROVED),
        ("e1", DUPLICATE, APPROVED),  # a retry does not replace the decision
        ("e2", HELD, HELD_BACK),
        ("e2", DUPLICATE, HELD_BACK),  # a retry while held: still pending
        ("e2", SUPPRESSED, SUPPRESSED),  # the release
        ("e3", DUPLICATE, DUPLICATE),  # the first this index saw of e3
    ]:
        if index.find(0, event_id) is False:
            index.find_or_wait(0, event_id, lambda d: heard.append(f"{d.event_id}:{d.outcome}"))
        decision, event = decided(event_id, outcome)
        index(0, decision, event)  # type: ignore[arg-type]
        found = index.find(0, event_id)
        assert (found.outcome if isinstance(found, Decision) else found) == expected
    assert index.find(0, "never") is False and index.find(1, "e1") is False
    assert heard == ["e1:approved", "e2:suppressed", "e3:duplicate"]


@given(st.lists(st.integers(0, 50), max_size=200), st.integers(1, 10))
def test_each_partition_keeps_its_newest_events_only(ids: list[int], size: int) -> None:
    index = DecisionIndex(size)
    for i in ids:
        decision, event = decided(f"e{i}", APPROVED)
        index(0, decision, event)  # type: ignore[arg-type]
    kept: dict[int, None] = {}  # the model: an id known already stays where it is
    for i in ids:
        if i not in kept:
            kept[i] = None
            if len(kept) > size:
                del kept[next(iter(kept))]
    assert {i for i in range(51) if index.find(0, f"e{i}") is not False} == set(kept)


def test_a_submitted_event_is_pending_until_any_decision_even_a_duplicate() -> None:
    index = DecisionIndex()
    index.submitted(0, "e1")
    index.submitted(0, "e2")
    assert index.find(0, "e1") == SUBMITTED
    decision, event = decided("e1", DUPLICATE)  # its first decision was forgotten
    index(0, decision, event)  # type: ignore[arg-type]
    assert index.find(0, "e1") == decision
    index.forget(0, "e2")  # not written after all
    assert index.find(0, "e2") is False


def test_a_cancelled_waiter_hears_nothing() -> None:
    index = DecisionIndex()
    heard: list[Decision] = []
    assert index.find_or_wait(0, "e1", heard.append) is False
    index.cancel("e1", heard.append)
    decision, event = decided("e1", APPROVED)
    index(0, decision, event)  # type: ignore[arg-type]
    assert heard == []


def test_the_answer_names_the_audit_record_and_not_before_in_iso_8601() -> None:
    decision, _ = decided("e1", SUPPRESSED)
    body = decision_body(decision)
    assert body["status"] == "decided" and body["audit_id"] == "d-e1"
    assert body["action"] is None and body["not_before"] is None
    assert iso_millis(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"


def test_the_answer_from_the_topics_equals_the_answer_from_the_index() -> None:
    events = [consent(True, customer="ana"), proposal("ana"), proposal("ana", channel="sms")]
    decisions, _ = decide_all(events, DEFAULT_POLICY)
    assert any(d.action is not None for d in decisions)
    for decision, event in zip(decisions, events, strict=True):
        audit = audit_record(decision, event, Source("agent-events", 0, 0), 0)
        action = None if decision.action is None else decision.action.to_dict()
        assert recorded_body(audit, action) == decision_body(decision)


OUTCOMES = st.sampled_from([APPROVED, DUPLICATE, HELD, SUPPRESSED])


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), OUTCOMES), max_size=60),
    st.integers(1, 5),
)
def test_a_batch_recorded_at_once_leaves_what_its_decisions_one_by_one_leave(
    made: list[tuple[int, int, str]], size: int
) -> None:
    one_by_one, batched = DecisionIndex(size), DecisionIndex(size)
    heard: dict[str, list[str]] = {"one": [], "batch": []}
    for index, name in ((one_by_one, "one"), (batched, "batch")):
        index.submitted(1, "e0")
        for i in range(7):
            index.find_or_wait(0, f"e{i}", lambda d, n=name: heard[n].append(d.event_id))
    batch = []
    for partition, i, outcome in made:
        decision, event = decided(f"e{i}", outcome)
        one_by_one(partition, decision, event)  # type: ignore[arg-type]
        batch.append((partition, f"e{i}", decision))
    batched.record(batch)
    for partition in (0, 1):
        for i in range(7):
            assert batched.find(partition, f"e{i}") == one_by_one.find(partition, f"e{i}")
    assert heard["batch"] == heard["one"]
