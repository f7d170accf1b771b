"""What-if: the same recorded input decided under two policies, counted by transition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.core.policy import DEFAULT_POLICY, HOUR_MS, KillSwitch
from pipeline.core.whatif import what_if
from tests.factories import T0, consent, proposal

CAP_1 = replace(DEFAULT_POLICY, caps=(replace(DEFAULT_POLICY.caps[0], limit=1),))
KILL_PROMO = replace(DEFAULT_POLICY, kill_switch=KillSwitch(agents=frozenset({"promo-bot"})))


def stream():
    """Two customers opted in; each gets three emails an hour apart, two agents alternating."""
    events = [consent(True, customer="c1"), consent(True, customer="c2")]
    for i in range(3):
        for c in ("c1", "c2"):
            agent = "promo-bot" if i % 2 else "winback-bot"
            events.append(proposal(c, T0 + (i + 1) * HOUR_MS, event_id=f"{c}-{i}", agent=agent))
    return events


@pytest.mark.parametrize(
    ("new", "changed", "examples"),
    [
        (DEFAULT_POLICY, {}, {}),
        # the first email per customer still goes; the 2nd and 3rd now hit the cap
        (
            CAP_1,
            {("approved", "suppressed/frequency_cap"): 4},
            {("approved", "suppressed/frequency_cap"): ["c1-1", "c2-1", "c1-2"]},
        ),
        # promo-bot sent each customer's 2nd email: now killed, nothing else changes
        (
            KILL_PROMO,
            {("approved", "suppressed/kill_switch"): 2},
            {("approved", "suppressed/kill_switch"): ["c1-1", "c2-1"]},
        ),
    ],
)
def test_what_if_counts_changed_decisions(new, changed, examples):
    report = what_if(stream(), DEFAULT_POLICY, new)
    assert report.events == 8
    assert report.old_outcomes == {"approved": 6, "recorded": 2}
    assert dict(report.changed_transitions()) == changed
    assert report.examples == examples
    assert report.changed == sum(changed.values())
    assert report.new_outcomes["approved"] == 6 - report.changed
    assert sum(report.new_outcomes.values()) == sum(report.transitions.values()) == 8


def test_each_policy_keeps_its_own_state_chain():
    """A suppression under the new policy frees a cap slot only in the new chain."""
    cap_2 = replace(DEFAULT_POLICY, caps=(replace(DEFAULT_POLICY.caps[0], limit=2),))
    kill_and_cap = replace(cap_2, kill_switch=KILL_PROMO.kill_switch)
    events = [
        consent(True),
        *(
            proposal("c1", T0 + i * HOUR_MS, event_id=f"p{i}", agent=a)
            for i, a in enumerate(["promo-bot", "winback-bot", "winback-bot"], 1)
        ),
    ]
    report = what_if(events, cap_2, kill_and_cap)
    # old: p1, p2 approved, p3 capped; new: p1 killed, so p3 fits under the cap
    assert dict(report.changed_transitions()) == {
        ("approved", "suppressed/kill_switch"): 1,
        ("suppressed/frequency_cap", "approved"): 1,
    }


def test_report_as_json_lists_every_transition():
    data = what_if(stream(), DEFAULT_POLICY, CAP_1).to_dict()
    assert data["changed"] == 4 and data["events"] == 8
    assert {(t["old"], t["new"]): t["count"] for t in data["transitions"]} == {
        ("approved", "approved"): 2,
        ("approved", "suppressed/frequency_cap"): 4,
        ("recorded", "recorded"): 2,
    }
