"""Service first: no selling while a case is open or after a fresh complaint."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, RECORDED, SUPPRESSED
from pipeline.core.policy import (
    Policy,
    ServiceFirst,
)
from tests.factories import T0, consent, decide_all, proposal, signal

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


SF = ServiceFirst()


@pytest.mark.parametrize(
    ("history", "candidate", "outcome", "reason"),
    [
        ([signal("case_opened", case_id="k1")], {}, SUPPRESSED, "case k1 is open"),
        ([signal("case_opened", case_id="k1")], {"category": "sales"}, SUPPRESSED, "case k1"),
        (
            [signal("case_opened", case_id="k1"), signal("case_resolved", case_id="k1")],
            {},
            APPROVED,
            "",
        ),
        (
            [
                signal("case_opened", case_id="k1"),
                signal("case_opened", case_id="k2"),
                signal("case_resolved", case_id="k1"),
            ],
            {},
            SUPPRESSED,
            "case k2 is open",
        ),
        (  # a resolve without id closes every case
            [
                signal("case_opened", case_id="k1"),
                signal("case_opened", case_id="k2"),
                signal("case_resolved"),
            ],
            {},
            APPROVED,
            "",
        ),
        # service outreach is what an open case needs: not held back, no trace line
        ([signal("case_opened", case_id="k1")], {"category": "service"}, APPROVED, ""),
        # a case older than case_max_age_ms counts as closed
        ([signal("case_opened", case_id="k1")], {"at": T0 + SF.case_max_age_ms}, APPROVED, ""),
        (
            [signal("case_opened", case_id="k1")],
            {"at": T0 + SF.case_max_age_ms - 1},
            SUPPRESSED,
            "case k1",
        ),
        ([signal("sentiment", score="-0.8")], {}, SUPPRESSED, "after a complaint"),
        (
            [signal("sentiment", score="-0.8")],
            {"at": T0 + SF.complaint_cooldown_ms - 1},
            SUPPRESSED,
            "after a complaint",
        ),
        ([signal("sentiment", score="-0.8")], {"at": T0 + SF.complaint_cooldown_ms}, APPROVED, ""),
        # exactly the threshold is not a complaint; garbage scores are ignored
        ([signal("sentiment", score="-0.5")], {}, APPROVED, ""),
        ([signal("sentiment", score="awful")], {}, APPROVED, ""),
    ],
)
def test_service_first(history, candidate, outcome, reason):
    candidate = {"at": T0 + 10, **candidate}
    events = [consent(True, at=T0 - 1), *history, proposal(**candidate)]
    decisions, _ = run(events)
    d = decisions[-1]
    assert all(x.outcome == RECORDED for x in decisions[:-1])
    assert d.outcome == outcome
    assert reason in d.reason
    if outcome == SUPPRESSED:
        assert d.rule == "service_first"
    assert ("service_first" in rules_in(d)) == (candidate.get("category") != "service")


def test_open_cases_are_bounded():
    policy = Policy(caps=(), service_first=ServiceFirst(max_open_cases=2))
    events = [signal("case_opened", at=T0 + i, case_id=f"k{i}") for i in range(5)]
    _, state = run(events, policy)
    assert list(state.open_cases) == ["k3", "k4"]
