"""Duplicate merge: one customer trigger becomes one action, the first approved one."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, MERGED, SUPPRESSED
from pipeline.core.policy import Policy
from tests.factories import T0, decide_all, proposal

POLICY = Policy()


def run(events, policy=POLICY):
    return decide_all(events, policy)


@pytest.mark.parametrize(
    ("second_at", "second_trigger", "expected"),
    [
        (T0 + 1, "cart-abandoned-1", MERGED),
        (T0 + POLICY.merge_window_ms - 1, "cart-abandoned-1", MERGED),
        (T0 + POLICY.merge_window_ms, "cart-abandoned-1", APPROVED),
        (T0 + 1, "cart-abandoned-2", APPROVED),
        (T0 + 1, None, APPROVED),
    ],
)
def test_duplicate_merge(second_at, second_trigger, expected):
    first = proposal(category="service", trigger="cart-abandoned-1", agent="service-bot")
    second = proposal(category="service", at=second_at, trigger=second_trigger, channel="sms")
    decisions, _ = run([first, second])
    assert decisions[0].outcome == APPROVED
    assert decisions[1].outcome == expected
    if expected == MERGED:
        assert decisions[1].merged_into == decisions[0].decision_id
        assert decisions[1].action is None


def test_merge_only_joins_an_approved_first():
    first = proposal(category="marketing", trigger="t")  # no opt-in -> suppressed
    second = proposal(category="service", trigger="t", at=T0 + 1)
    decisions, _ = run([first, second])
    assert [d.outcome for d in decisions] == [SUPPRESSED, APPROVED]
