"""Frequency caps: N contacts per rolling window and scope, counted across every agent."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, SUPPRESSED
from pipeline.core.policy import DAY_MS, FrequencyCap, Policy
from tests.factories import T0, consent, decide_all, proposal

POLICY = Policy()
MIN = 60_000


def run(events, policy=POLICY):
    return decide_all(events, policy)


CAP2 = Policy(caps=(FrequencyCap("two-per-hour", limit=2, window_ms=60 * MIN, scope="channel"),))


@pytest.mark.parametrize(
    ("offsets_ms", "channels", "expected"),
    [
        ([0, 1, 2], ["email"] * 3, [APPROVED, APPROVED, SUPPRESSED]),
        # window boundary: a contact exactly one window old no longer counts
        ([0, 1, 60 * MIN], ["email"] * 3, [APPROVED, APPROVED, APPROVED]),
        ([0, 1, 60 * MIN - 1], ["email"] * 3, [APPROVED, APPROVED, SUPPRESSED]),
        # per channel: another channel has its own budget
        ([0, 1, 2], ["email", "email", "sms"], [APPROVED, APPROVED, APPROVED]),
    ],
)
def test_frequency_cap_per_channel(offsets_ms, channels, expected):
    events = [consent(True, at=T0 - 1)] + [
        proposal(at=T0 + off, channel=ch) for off, ch in zip(offsets_ms, channels, strict=True)
    ]
    decisions, _ = run(events, CAP2)
    assert [d.outcome for d in decisions[1:]] == expected
    if SUPPRESSED in expected:
        blocked = decisions[1 + expected.index(SUPPRESSED)]
        assert blocked.rule == "frequency_cap"
        assert "2/2" in blocked.reason


@pytest.mark.parametrize(
    ("scope", "second", "expected"),
    [
        ("all", {"channel": "sms", "category": "sales"}, SUPPRESSED),
        ("category", {"channel": "sms", "category": "marketing"}, SUPPRESSED),
        ("category", {"channel": "sms", "category": "sales"}, APPROVED),
        ("department", {"channel": "push", "department": "marketing"}, SUPPRESSED),
    ],
)
def test_frequency_cap_scopes(scope, second, expected):
    policy = Policy(caps=(FrequencyCap("one", limit=1, window_ms=DAY_MS, scope=scope),))
    events = [consent(True, at=T0 - 1), proposal(at=T0), proposal(at=T0 + 1, **second)]
    decisions, _ = run(events, policy)
    assert decisions[1].outcome == APPROVED
    assert decisions[2].outcome == expected


def test_every_cap_scope_but_all_names_the_contact_field_it_counts_by():
    """`SCOPE_FIELD` is shared with the customer view, so both count caps alike."""
    from pipeline.core.rules.frequency_caps import CAP_SCOPES, SCOPE_FIELD
    from pipeline.core.state import Contact

    assert set(SCOPE_FIELD) == CAP_SCOPES - {"all"}
    assert all(Contact._fields[i] == scope for scope, i in SCOPE_FIELD.items())


def test_transactional_is_exempt_and_does_not_consume_caps():
    policy = Policy(caps=(FrequencyCap("one", limit=1, window_ms=DAY_MS, scope="all"),))
    events = [
        proposal(category="transactional", at=T0),
        proposal(category="transactional", at=T0 + 1),
        proposal(category="service", at=T0 + 2),
        proposal(category="service", at=T0 + 3),
    ]
    decisions, _ = run(events, policy)
    assert [d.outcome for d in decisions] == [APPROVED, APPROVED, APPROVED, SUPPRESSED]
