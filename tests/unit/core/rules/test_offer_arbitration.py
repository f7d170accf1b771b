"""Offer arbitration: one active offer per window, ranked by score, ties by authority."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, RECORDED, SUPPRESSED
from pipeline.core.policy import (
    DAY_MS,
    OfferArbitration,
    Policy,
)
from pipeline.core.rules.offer_arbitration import score
from tests.factories import T0, consent, decide_all, proposal

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


OFFERS = Policy(caps=(), authority=("upsell-bot", "winback-bot"), offers=OfferArbitration(DAY_MS))


def offer(at, offer_id, priority, agent="upsell-bot", **extra):
    return proposal(
        at=at,
        agent=agent,
        department="sales",
        category="sales",
        action="offer",
        offer_id=offer_id,
        priority=priority,
        **extra,
    )


@pytest.mark.parametrize(
    ("second", "outcome", "reason"),
    [
        (offer(T0 + 1, "b", 10), SUPPRESSED, "active offer a by upsell-bot (score 50) scores"),
        (offer(T0 + 1, "b", 90), SUPPRESSED, "was made first"),
        (offer(T0 + DAY_MS - 1, "b", 10), SUPPRESSED, "until"),
        (offer(T0 + DAY_MS, "b", 10), APPROVED, "every rule passed"),  # window is over
        # ties: the active offer's agent has precedence, or it simply came first
        (offer(T0 + 1, "b", 50, agent="winback-bot"), SUPPRESSED, "its agent has precedence"),
        (offer(T0 + 1, "b", 50, agent="upsell-bot"), SUPPRESSED, "its agent has precedence"),
        # a message is not an offer
        (proposal(at=T0 + 1, category="sales", department="sales"), APPROVED, "every rule"),
    ],
)
def test_offer_arbitration(second, outcome, reason):
    events = [consent(True, at=T0 - 1), offer(T0, "a", 50), second]
    decisions, state = run(events, OFFERS)
    assert decisions[1].outcome == APPROVED
    assert decisions[2].outcome == outcome
    assert reason in decisions[2].reason
    if outcome == SUPPRESSED:
        assert decisions[2].rule == "offer_arbitration"
        assert state.offer.offer_id == "a"


def test_offer_tie_when_the_newcomer_outranks():
    events = [
        consent(True, at=T0 - 1),
        offer(T0, "a", 50, agent="winback-bot"),
        offer(T0 + 1, "b", 50, agent="upsell-bot"),
    ]
    decisions, _ = run(events, OFFERS)
    assert decisions[2].outcome == SUPPRESSED
    assert "ties; it was made first" in decisions[2].reason


def test_blocked_offer_does_not_become_active():
    events = [offer(T0, "a", 90), consent(True, at=T0 + 1), offer(T0 + 2, "b", 10)]
    decisions, state = run(events, OFFERS)
    assert [d.outcome for d in decisions] == [SUPPRESSED, RECORDED, APPROVED]
    assert decisions[0].rule == "consent"
    assert state.offer.offer_id == "b"


@pytest.mark.parametrize(
    ("extra", "weights", "expected"),
    [
        ({}, OfferArbitration(), 50.0),  # missing propensity and value count as 1
        ({"propensity": 0.5, "offer_value": 20.0}, OfferArbitration(), 500.0),
        ({"propensity": 0.5, "offer_value": 20.0}, OfferArbitration(value_weight=0), 25.0),
        ({"propensity": 0.5}, OfferArbitration(priority_weight=0, propensity_weight=2), 0.25),
    ],
)
def test_offer_score(extra, weights, expected):
    assert score(offer(T0, "a", 50, **extra).proposal, weights) == pytest.approx(expected)


def test_offers_are_off_by_default():
    events = [consent(True, at=T0 - 1), offer(T0, "a", 50), offer(T0 + 1, "b", 10)]
    decisions, state = run(events)
    assert [d.outcome for d in decisions[1:]] == [APPROVED, APPROVED]
    assert state.offer is None
    assert "offer_arbitration" not in rules_in(decisions[-1])
