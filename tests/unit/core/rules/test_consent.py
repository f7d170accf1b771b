"""Consent per channel and purpose, learned from consent_changed signals."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, RECORDED, SUPPRESSED
from pipeline.core.policy import Policy
from tests.factories import T0, consent, decide_all, proposal

POLICY = Policy()


def run(events, policy=POLICY):
    return decide_all(events, policy)


@pytest.mark.parametrize(
    ("history", "candidate", "outcome", "rule"),
    [
        ([], proposal(category="marketing"), SUPPRESSED, "consent"),
        ([], proposal(category="service", department="service"), APPROVED, None),
        ([], proposal(category="transactional"), APPROVED, None),
        ([consent(True)], proposal(category="marketing", at=T0 + 1), APPROVED, None),
        (
            [consent(True), consent(False, "email", "marketing", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            SUPPRESSED,
            "consent",
        ),
        (
            [consent(True), consent(False, "sms", "marketing", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            APPROVED,
            None,
        ),
        (
            [consent(False, "email", "marketing", at=T0), consent(True, "all", "all", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            APPROVED,
            None,
        ),
        ([consent(True)], proposal(category="sales", at=T0 + 1, channel="sms"), APPROVED, None),
        ([consent(False)], proposal(category="service", at=T0 + 1), SUPPRESSED, "consent"),
    ],
)
def test_consent(history, candidate, outcome, rule):
    decisions, _ = run([*history, candidate])
    assert decisions[-1].outcome == outcome
    assert decisions[-1].rule == rule
    assert all(d.outcome == RECORDED for d in decisions[:-1])
