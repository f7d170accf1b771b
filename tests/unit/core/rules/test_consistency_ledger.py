"""Consistency ledger: the customer is never told two values for one fact; a higher authority
corrects, and a contradiction may escalate. Through the public `decide` entry point."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, ESCALATED, SUPPRESSED
from pipeline.core.policy import (
    Escalation,
    Policy,
)
from tests.factories import T0, decide_all, proposal
from tests.unit.core.rules.service_messages import answer

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


RANKED = Policy(caps=(), authority=("care-bot", "billing-bot"))


def said(agent, at, **facts):
    return proposal(category="service", department="service", agent=agent, at=at, asserts=facts)


@pytest.mark.parametrize(
    ("first", "second", "outcome", "ledger"),
    [
        # the same value again is consistent
        (("billing-bot", "10"), ("billing-bot", "10"), APPROVED, ("10", "billing-bot")),
        # a different value from the same agent: blocked, the ledger keeps the first
        (("billing-bot", "10"), ("billing-bot", "12"), SUPPRESSED, ("10", "billing-bot")),
        # a lower authority cannot correct a higher one
        (("care-bot", "10"), ("billing-bot", "12"), SUPPRESSED, ("10", "care-bot")),
        # an agent outside the authority list ranks lowest
        (("billing-bot", "10"), ("promo-bot", "12"), SUPPRESSED, ("10", "billing-bot")),
        (("promo-bot", "10"), ("winback-bot", "12"), SUPPRESSED, ("10", "promo-bot")),
        # a higher authority corrects, and the ledger follows
        (("billing-bot", "10"), ("care-bot", "12"), APPROVED, ("12", "care-bot")),
        (("promo-bot", "10"), ("billing-bot", "12"), APPROVED, ("12", "billing-bot")),
    ],
)
def test_consistency_ledger(first, second, outcome, ledger):
    events = [said(first[0], T0, price=first[1]), said(second[0], T0 + 1, price=second[1])]
    decisions, state = run(events, RANKED)
    assert decisions[0].outcome == APPROVED
    assert decisions[1].outcome == outcome
    assert (state.facts["price"].value, state.facts["price"].agent) == ledger
    if outcome == SUPPRESSED:
        assert decisions[1].rule == "consistency_ledger"
        assert f"told by {first[0]}" in decisions[1].reason


def test_after_a_correction_the_lower_agent_cannot_restate_the_old_value():
    events = [
        said("billing-bot", T0, price="10"),
        said("care-bot", T0 + 1, price="12"),
        said("billing-bot", T0 + 2, price="10"),
        said("billing-bot", T0 + 3, price="12"),
    ]
    decisions, _ = run(events, RANKED)
    assert [d.outcome for d in decisions] == [APPROVED, APPROVED, SUPPRESSED, APPROVED]
    ledger_step = next(s for s in decisions[1].trace if s.rule == "consistency_ledger")
    assert ledger_step.reason == "correction of price by higher authority care-bot"


def test_only_approved_actions_write_the_ledger():
    blocked = proposal(category="marketing", asserts={"price": "10"})  # no opt-in
    later = said("care-bot", T0 + 1, price="12")
    decisions, state = run([blocked, later])
    assert [d.outcome for d in decisions] == [SUPPRESSED, APPROVED]
    assert state.facts["price"].value == "12"


def test_ledger_is_bounded_and_silent_without_asserts():
    policy = Policy(caps=(), max_facts=2)
    events = [said("care-bot", T0 + i, **{f"f{i}": "v"}) for i in range(4)]
    events.append(proposal(category="service", at=T0 + 9))
    decisions, state = run(events, policy)
    assert list(state.facts) == ["f2", "f3"]
    assert "consistency_ledger" not in rules_in(decisions[-1])


@pytest.mark.parametrize(
    ("escalates", "outcome"),
    [(False, SUPPRESSED), (True, ESCALATED)],
)
def test_contradictions_escalate_when_the_policy_says_so(escalates, outcome):
    policy = Policy(caps=(), escalation=Escalation(consistency_escalates=escalates))
    first = answer(T0, asserts={"refund_days": "14"}, ai_generated=False)
    second = answer(T0 + 1, agent="promo-bot", asserts={"refund_days": "30"})
    decisions, state = run([first, second], policy)
    d = decisions[1]
    assert d.outcome == outcome
    assert d.rule == "consistency_ledger"
    assert "refund_days='30' contradicts '14'" in d.reason
    if escalates:
        assert d.action.action == "route_case"
        assert d.action.asserts == {}
        assert "refund_days" in d.action.content and "human-care" in d.action.content
        assert state.handoff is None  # only the customer's own signals mark a handoff
        assert state.facts["refund_days"].value == "14"
    else:
        assert d.action is None


def test_consistent_answers_do_not_escalate():
    policy = Policy(caps=(), escalation=Escalation(consistency_escalates=True))
    decisions, _ = run(
        [answer(T0, asserts={"refund_days": "14"}), answer(T0 + 1, asserts={"refund_days": "14"})],
        policy,
    )
    assert [d.outcome for d in decisions] == [APPROVED, APPROVED]
