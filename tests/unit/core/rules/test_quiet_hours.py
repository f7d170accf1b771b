"""Quiet hours: defer or suppress at the customer's local night, across DST; a deferred
action must still pass every later rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.core.decision import APPROVED, DEFERRED, EMITTING, SUPPRESSED
from pipeline.core.policy import (
    DAY_MS,
    FrequencyCap,
    Policy,
    QuietHours,
)
from tests.factories import consent, decide_all, proposal, signal

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


QUIET = Policy(
    caps=(),
    quiet_hours=QuietHours(
        "21:00",
        "08:00",
        "UTC",
        {"marketing": "defer", "sales": "suppress", "transactional": "defer"},
    ),
)


@pytest.mark.parametrize(
    ("at", "category", "outcome", "not_before"),
    [
        ("2026-01-01T22:00", "marketing", DEFERRED, "2026-01-02T08:00"),
        ("2026-01-01T21:00", "marketing", DEFERRED, "2026-01-02T08:00"),  # start is quiet
        ("2026-01-01T20:59:59.999", "marketing", APPROVED, None),
        ("2026-01-01T07:59:59.999", "marketing", DEFERRED, "2026-01-01T08:00"),
        ("2026-01-01T08:00", "marketing", APPROVED, None),  # end is not quiet
        ("2026-01-01T00:00", "marketing", DEFERRED, "2026-01-01T08:00"),
        ("2026-01-01T23:00", "sales", SUPPRESSED, None),
        ("2026-01-01T23:00", "transactional", APPROVED, None),  # exempt by policy
        ("2026-01-01T23:00", "service", APPROVED, None),  # not a quiet category
    ],
)
def test_quiet_hours_utc(at, category, outcome, not_before):
    events = [consent(True, at=ms(at) - 1), proposal(category=category, at=ms(at))]
    decisions, _ = run(events, QUIET)
    d = decisions[-1]
    assert d.outcome == outcome
    if outcome == DEFERRED:
        assert d.outcome in EMITTING
        assert d.rule == "quiet_hours"
        assert d.action is not None
        assert d.action.not_before == ms(not_before)
    elif outcome == SUPPRESSED:
        assert d.rule == "quiet_hours"
        assert d.action is None
    else:
        assert d.action is not None and d.action.not_before is None


@pytest.mark.parametrize(
    ("zone", "start", "end", "at", "not_before"),
    [
        # New York is UTC-5 in winter: 22:00 local is 03:00Z, 08:00 local is 13:00Z
        ("America/New_York", "21:00", "08:00", "2026-01-01T03:00", "2026-01-01T13:00"),
        # Spring forward in Berlin (29 March 2026): the night is an hour shorter
        ("Europe/Berlin", "21:00", "08:00", "2026-03-28T22:00", "2026-03-29T06:00"),
        # Fall back in Berlin (25 October 2026): the night is an hour longer
        ("Europe/Berlin", "21:00", "08:00", "2026-10-24T21:00", "2026-10-25T07:00"),
        # A quiet end inside the spring-forward gap (02:30 does not exist): just after it
        ("Europe/Berlin", "21:00", "02:30", "2026-03-29T00:00", "2026-03-29T01:30"),
        # A daytime span that does not wrap midnight
        ("Asia/Tokyo", "12:00", "14:00", "2026-01-01T03:30", "2026-01-01T05:00"),
    ],
)
def test_quiet_hours_in_customer_time_zone_across_dst(zone, start, end, at, not_before):
    policy = Policy(caps=(), quiet_hours=QuietHours(start, end, "UTC", {"marketing": "defer"}))
    events = [
        consent(True, at=ms(at) - 2),
        signal("profile_updated", at=ms(at) - 1, timezone=zone),
        proposal(at=ms(at)),
    ]
    decisions, state = run(events, policy)
    assert state.timezone == zone
    assert decisions[-1].outcome == DEFERRED
    assert decisions[-1].action.not_before == ms(not_before)


def test_unknown_customer_time_zone_is_ignored_and_policy_zone_used():
    policy = Policy(
        caps=(), quiet_hours=QuietHours("21:00", "08:00", "Europe/Berlin", {"marketing": "defer"})
    )
    at = ms("2026-01-01T21:30")  # 22:30 in Berlin, quiet; 21:30 would also be quiet in UTC
    events = [
        consent(True, at=at - 2),
        signal("profile_updated", at=at - 1, timezone="Nowhere/Land"),
        proposal(at=at),
    ]
    decisions, state = run(events, policy)
    assert state.timezone is None
    assert decisions[-1].action.not_before == ms("2026-01-02T07:00")


def test_deferred_action_must_still_pass_the_caps():
    policy = Policy(
        caps=(FrequencyCap("one", limit=1, window_ms=DAY_MS, scope="all"),),
        quiet_hours=QUIET.quiet_hours,
    )
    at = ms("2026-01-01T23:00")
    events = [consent(True, at=at - 1), proposal(at=at), proposal(at=at + 1, channel="sms")]
    decisions, _ = run(events, policy)
    assert [d.outcome for d in decisions[1:]] == [DEFERRED, SUPPRESSED]
    assert decisions[2].rule == "frequency_cap"
    assert rules_in(decisions[2])[-2:] == ["quiet_hours", "frequency_cap"]
