"""Escalation: repeat contact, negative streaks and explicit requests route the next AI
answer to a human queue, later AI answers wait for case_resolved. Through the public
`decide` entry point; the policy section read strictly."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.arbitration import decide
from pipeline.core.decision import APPROVED, EMITTING, ESCALATED, RECORDED, SUPPRESSED
from pipeline.core.policy import DEFAULT_POLICY, HOUR_MS, Escalation, FrequencyCap, Policy
from pipeline.core.state import EMPTY_STATE, CustomerState, Handoff
from tests.factories import T0, decide_all, signal
from tests.unit.core.policy_mistakes import assert_one_mistake
from tests.unit.core.rules.service_messages import answer

MIN = 60_000
REPEAT = Policy(caps=(), escalation=Escalation(repeat_contacts=3, repeat_window_ms=HOUR_MS))
STREAK = Policy(caps=(), escalation=Escalation(negative_streak=2, sentiment_threshold=-0.5))
EXPLICIT = Policy(caps=(), escalation=Escalation(explicit_request=True, queue="tier-2"))


def run(events, policy):
    return decide_all(events, policy)


def msg(at, **attrs):
    return signal("message_received", at=at, **attrs)


def score(at, value):
    return signal("sentiment", at=at, score=str(value))


@pytest.mark.parametrize(
    ("policy", "signals", "reason"),
    [
        # repeat contact: N inbound contacts within the window
        (REPEAT, [msg(T0), msg(T0 + MIN), msg(T0 + 2 * MIN)], "repeat contact: 3 contacts"),
        (REPEAT, [msg(T0), signal("case_opened", at=T0 + MIN), msg(T0 + 2 * MIN)], "repeat"),
        (REPEAT, [msg(T0), msg(T0 + 40 * MIN), msg(T0 + 80 * MIN)], None),  # spread out
        (REPEAT, [msg(T0), msg(T0 + MIN)], None),  # one short
        (Policy(caps=()), [msg(T0 + i) for i in range(10)], None),  # off by default
        # negative streak: K consecutive scores below the threshold
        (STREAK, [score(T0, -0.8), score(T0 + 1, -0.9)], "negative sentiment: 2 scores"),
        (STREAK, [score(T0, -0.8), score(T0 + 1, 0.3), score(T0 + 2, -0.9)], None),  # reset
        (STREAK, [score(T0, -0.5), score(T0 + 1, -0.6)], None),  # -0.5 is not below -0.5
        (STREAK, [score(T0, -0.8), signal("sentiment", at=T0 + 1, score="bad")], None),
        # explicit request for a human
        (EXPLICIT, [signal("handoff_to_human", at=T0)], "asked for a human (handoff_to_human)"),
        (EXPLICIT, [msg(T0, intent="HUMAN")], "asked for a human (intent=human)"),
        (EXPLICIT, [msg(T0, intent="billing")], None),
        (Policy(caps=()), [signal("handoff_to_human", at=T0)], None),  # off by default
    ],
)
def test_what_makes_a_customer_need_a_human(policy, signals, reason):
    decisions, state = run(signals, policy)
    assert {d.outcome for d in decisions} == {RECORDED}
    if reason is None:
        assert state.handoff is None
        [d], _ = run([answer(T0 + HOUR_MS)], policy)
        assert d.outcome == APPROVED
        assert "escalation" not in [s.rule for s in d.trace]
    else:
        assert state.handoff is not None
        assert reason in state.handoff.reason
        assert state.handoff.action_id is None


def test_first_ai_answer_is_routed_then_ai_waits_for_resolution():
    later = T0 + 5 * MIN
    events = [
        signal("handoff_to_human", at=T0),
        answer(later),  # escalated: route_case to the queue
        answer(later + 1),  # suppressed until the case is resolved
        answer(later + 2, ai_generated=False),  # a human agent's answer is not held back
        answer(later + 3, action="message", category="marketing", channel="email"),  # not service
        signal("case_resolved", at=later + 4),
        answer(later + 5),  # back to normal
    ]
    decisions, state = run(events, EXPLICIT)
    outcomes = [d.outcome for d in decisions]
    assert outcomes == [RECORDED, ESCALATED, SUPPRESSED, APPROVED, SUPPRESSED, RECORDED, APPROVED]
    escalated = decisions[1]
    assert escalated.outcome in EMITTING
    assert escalated.rule == "escalation"
    assert "routed to tier-2" in escalated.reason
    action = escalated.action
    assert action is not None
    assert action.action == "route_case"
    assert action.content.startswith("escalated to tier-2: needs a human (customer asked")
    assert action.channel == "chat"
    assert action.source_event_ids == (events[1].event_id,)
    held = decisions[2]
    assert held.rule == "escalation"
    assert f"held until {action.action_id} is resolved" in held.reason
    assert decisions[4].rule == "consent"  # marketing needs opt-in; escalation stayed silent
    assert "escalation" not in [s.rule for s in decisions[4].trace]
    assert state.handoff is None


@pytest.mark.parametrize(
    ("changes", "escalates"),
    [
        ({}, True),  # AI answer
        ({"action": "message"}, True),  # AI message in a service conversation
        ({"action": "message", "category": "transactional"}, False),
        ({"ai_generated": False}, False),
        ({"action": "callback"}, False),
    ],
)
def test_which_proposals_are_escalated(changes, escalates):
    handoff = Handoff(T0, "repeat contact", None)
    state = EMPTY_STATE.evolve(handoff=handoff)
    ev = answer(T0 + 1, **changes)
    d, after = decide(state, ev, EXPLICIT, ev.occurred_at)
    assert (d.outcome == ESCALATED) is escalates
    assert (after.handoff.action_id is not None) is escalates


def test_a_handoff_set_under_an_old_policy_is_still_honoured_and_resolved():
    state = EMPTY_STATE.evolve(handoff=Handoff(T0, "repeat contact", None))
    d, state = decide(state, answer(T0 + 1), DEFAULT_POLICY, T0 + 1)
    assert d.outcome == ESCALATED
    assert "human-care" in d.action.content  # the default queue
    d, state = decide(state, signal("case_resolved", at=T0 + 2), DEFAULT_POLICY, T0 + 2)
    assert state.handoff is None


def test_route_case_is_not_a_contact():
    policy = replace(EXPLICIT, caps=(FrequencyCap("one", limit=1, window_ms=HOUR_MS),))
    decisions, state = run(
        [signal("handoff_to_human", at=T0), answer(T0 + 1), signal("case_resolved", at=T0 + 2)],
        policy,
    )
    assert decisions[1].outcome == ESCALATED
    assert state.contacts == ()
    [d], _ = run([answer(T0 + 3)], policy)
    assert d.outcome == APPROVED


def test_first_reason_is_kept_until_resolved():
    policy = replace(REPEAT, escalation=replace(REPEAT.escalation, explicit_request=True))
    _, state = run(
        [signal("handoff_to_human", at=T0), msg(T0 + 1), msg(T0 + 2), msg(T0 + 3)], policy
    )
    assert "handoff_to_human" in state.handoff.reason
    assert len(state.inbound) == 3  # bounded to repeat_contacts
    _, state = decide(state, signal("case_resolved", at=T0 + 4), policy, T0 + 4)
    assert state.handoff is None and state.inbound == () and state.negative_streak == 0


ARMED = Policy(
    caps=(),
    escalation=Escalation(
        repeat_contacts=2, repeat_window_ms=HOUR_MS, negative_streak=2, explicit_request=True
    ),
)

STEPS = st.sampled_from(
    [
        ("message_received", {}),
        ("message_received", {"intent": "human"}),
        ("case_opened", {}),
        ("case_resolved", {}),
        ("handoff_to_human", {}),
        ("sentiment", {"score": "-0.9"}),
        ("sentiment", {"score": "0.4"}),
        ("answer", {}),
        ("answer", {"ai_generated": False}),
    ]
)


@settings(max_examples=100)
@given(st.lists(st.tuples(STEPS, st.integers(min_value=1, max_value=HOUR_MS)), max_size=30))
def test_one_route_case_per_handoff_and_none_without_one(steps):
    state: CustomerState = EMPTY_STATE
    at = T0
    routed_since_resolution = 0
    for (kind, extra), gap in steps:
        at += gap
        ev = answer(at, **extra) if kind == "answer" else signal(kind, at=at, **extra)
        needed = state.handoff is not None
        d, state = decide(state, ev, ARMED, at)
        if kind == "case_resolved":
            routed_since_resolution = 0
            assert state.handoff is None
        if d.outcome == ESCALATED:
            routed_since_resolution += 1
            assert needed and d.action.action == "route_case"
            assert state.handoff.action_id == d.action.action_id
        if kind == "answer" and not extra and not needed:
            assert d.outcome == APPROVED
        assert routed_since_resolution <= 1
        assert CustomerState.from_bytes(state.to_bytes()) == state


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("escalation:\n  repeat_contacts: -1\n", 4, "escalation.repeat_contacts", ">= 0"),
        ("escalation:\n  repeat_window_ms: 0\n", 4, "escalation.repeat_window_ms", "> 0"),
        ("escalation:\n  negative_streak: two\n", 4, "escalation.negative_streak", "integer"),
        ("escalation:\n  sentiment_threshold: low\n", 4, "escalation.sentiment_threshold", "num"),
        ("escalation:\n  explicit_request: maybe\n", 4, "escalation.explicit_request", "true"),
        ("escalation:\n  queue: ''\n", 4, "escalation.queue", "non-empty string"),
        ("escalation:\n  consistency_escalates: 1\n", 4, "escalation.consistency_escalates", "t"),
        ("escalation:\n  queues: [a]\n", 4, "escalation.queues", "valid keys: consistency_e"),
    ],
)
def test_each_mistake_is_reported_with_line_and_hint(body, line, path, hint):
    assert_one_mistake(body, line, path, hint)
