"""Kill switch: an operator stops an agent, department, action or channel at once; silent while
nothing is switched off. Through the public `decide` entry point."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, SUPPRESSED
from pipeline.core.policy import (
    KillSwitch,
    Policy,
)
from tests.factories import T0, decide_all, proposal

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


KILLED = Policy(
    caps=(),
    kill_switch=KillSwitch(
        agents=frozenset({"rogue-bot"}),
        departments=frozenset({"sales"}),
        actions=frozenset({"callback"}),
        channels=frozenset({"voice"}),
    ),
)


@pytest.mark.parametrize(
    ("changes", "outcome", "reason"),
    [
        ({"agent": "rogue-bot"}, SUPPRESSED, "agent rogue-bot is switched off"),
        ({"department": "sales"}, SUPPRESSED, "department sales is switched off"),
        ({"action": "callback"}, SUPPRESSED, "action callback is switched off"),
        ({"channel": "voice"}, SUPPRESSED, "channel voice is switched off"),
        # the kill switch comes first: it wins over an expired proposal
        ({"agent": "rogue-bot", "expires_at": T0 - 1}, SUPPRESSED, "agent rogue-bot"),
        ({"agent": "care-bot"}, APPROVED, "every rule passed"),
    ],
)
def test_kill_switch(changes, outcome, reason):
    ev = proposal(**{"category": "service", "department": "service", **changes})
    [d], _ = run([ev], KILLED)
    assert d.outcome == outcome
    assert reason in d.reason
    assert rules_in(d)[1] == "kill_switch"
    if outcome == SUPPRESSED:
        assert d.rule == "kill_switch"


def test_kill_switch_is_silent_when_nothing_is_switched_off():
    [d], _ = run([proposal(category="service")])
    assert "kill_switch" not in rules_in(d)
