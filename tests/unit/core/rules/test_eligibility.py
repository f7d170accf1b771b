"""Eligibility: a proposal that expired before it is decided is suppressed."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, SUPPRESSED
from pipeline.core.policy import Policy
from tests.factories import T0, decide_all, proposal

POLICY = Policy()


def run(events, policy=POLICY):
    return decide_all(events, policy)


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [(T0 - 1, SUPPRESSED), (T0, SUPPRESSED), (T0 + 1, APPROVED), (None, APPROVED)],
)
def test_expired_proposals(expires_at, expected):
    decisions, _ = run([proposal(category="service", expires_at=expires_at)])
    assert decisions[0].outcome == expected
