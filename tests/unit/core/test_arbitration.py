"""The decision core end to end: replay detection, the trace order and deterministic ids, and
rules that stay silent on ordinary traffic."""

from __future__ import annotations

import pytest

from pipeline.contracts.codec import decode_event
from pipeline.core.arbitration import decide
from pipeline.core.decision import (
    DUPLICATE,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.simulator import AgentSimulator
from tests.factories import T0, consent, decide_all, proposal

POLICY = Policy()


def run(events, policy=POLICY):
    return decide_all(events, policy)


@pytest.mark.parametrize("kind", ["proposal", "signal"])
def test_replayed_event_id_is_duplicate_and_changes_nothing(kind):
    ev = proposal(category="service", event_id="same") if kind == "proposal" else consent(True)
    decisions, state = run([ev])
    again, state2 = decide(state, ev, POLICY, ev.occurred_at + 5)
    assert again.outcome == DUPLICATE
    assert again.action is None
    assert state2 == state
    assert decisions[0].decision_id in again.reason


def test_replay_memory_is_bounded():
    policy = Policy(replay_memory=3)
    events = [proposal(category="service", at=T0 + i) for i in range(5)]
    _, state = run(events, policy)
    assert len(state.seen) == 3
    assert [e.event_id in state.seen for e in events] == [False, False, True, True, True]


def test_approved_action_ids_are_deterministic_and_trace_is_ordered():
    ev = proposal(category="service", event_id="x1", trigger="t1")
    a, _ = decide(EMPTY_STATE, ev, POLICY, T0)
    b, _ = decide(EMPTY_STATE, ev, POLICY, T0)
    assert a == b
    assert a.action is not None and a.action.action_id.startswith("a-")
    assert [s.rule for s in a.trace] == [
        "replay",
        "eligibility",
        "duplicate_merge",
        "consent",
        "frequency_cap",
    ]
    assert a.policy_version == POLICY.policy_version


NEW_RULES = {
    "escalation",
    "loop_prevention",
    "known_facts",
    "banned_phrases",
    "pii_redaction",
    "disclosure",
    "max_length",
}


def test_new_rules_are_silent_on_simulator_traffic_under_the_default_policy():
    records = AgentSimulator(customers=50).records(3000)
    states: dict[str, CustomerState] = {}
    for r in records:
        ev = decode_event(r.key, r.value)
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, DEFAULT_POLICY, ev.occurred_at
        )
        assert not NEW_RULES & {s.rule for s in d.trace}
        assert d.action is None or d.action.content == ev.proposal.content
    for state in states.values():
        assert (state.handoff, state.inbound, state.negative_streak) == (None, (), 0)
        assert state.known == {} and state.disclosed == {}
