"""Table-driven tests of kill switch, service first, consistency ledger, quiet hours and
offer arbitration, through the public `decide` entry point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.core.decision import APPROVED, DEFERRED, EMITTING, RECORDED, SUPPRESSED
from pipeline.core.policy import (
    DAY_MS,
    HOUR_MS,
    FrequencyCap,
    KillSwitch,
    OfferArbitration,
    Policy,
    QuietHours,
    ServiceFirst,
)
from pipeline.core.rules.offer_arbitration import score
from pipeline.core.state import EMPTY_STATE, CustomerState
from tests.factories import T0, consent, decide_all, proposal, signal

NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def rules_in(decision) -> list[str]:
    return [s.rule for s in decision.trace]


# --- kill switch -----------------------------------------------------------------------------

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


# --- service first ---------------------------------------------------------------------------

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


# --- consistency ledger ----------------------------------------------------------------------

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


# --- quiet hours -----------------------------------------------------------------------------

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


# --- offer arbitration -----------------------------------------------------------------------

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


# --- state -----------------------------------------------------------------------------------


def test_extended_state_round_trips_and_empty_fields_stay_out_of_the_bytes():
    policy = Policy(caps=(), offers=OfferArbitration(DAY_MS))
    events = [
        consent(True),
        signal("case_opened", at=T0 + 1, case_id="k1"),
        signal("sentiment", at=T0 + 2, score="-0.9"),
        signal("profile_updated", at=T0 + 3, timezone="Europe/Paris"),
        said("care-bot", T0 + 4, price="10"),
        proposal(at=T0 + 5, category="service", action="offer", offer_id="a"),
    ]
    _, state = run(events, policy)
    assert state.open_cases and state.complaint_at and state.facts and state.timezone
    assert state.offer is not None
    assert CustomerState.from_bytes(state.to_bytes()) == state
    plain = run([consent(True), proposal(at=T0 + HOUR_MS)])[1].to_bytes()
    for key in (b'"oc"', b'"ca"', b'"f"', b'"tz"', b'"o"'):
        assert key not in plain


def test_old_state_bytes_still_read():
    old = b'{"c":{"*:all":[1,true]},"k":[],"t":{},"s":{"e1":"d-1"},"n":1}'
    state = CustomerState.from_bytes(old)
    assert "e1" in state.seen and len(state.seen) == 1
    assert state.facts == {} and state.offer is None and state.timezone is None


def test_evolve_knows_every_state_field():
    full = CustomerState.from_bytes(
        b'{"c":{"*:all":[1,true]},"k":[[1,"email","service","service"]],"t":{"t":[1,"d","a"]},'
        b'"s":{"e":"d"},"n":3,"oc":{"k":1},"ca":2,"f":{"p":["1","a",1]},"tz":"UTC",'
        b'"o":[1,"x","a",1.0,"d"],"j":{"ra":1},"h":{"h-1":["t",5,["{}"]]},"in":[4],"ns":2,'
        b'"ho":[3,"repeat contact",null],"kn":{"email":"x@y.z"},"di":{"cv:1":5},'
        b'"ex":{"control_group":["control",1]},"cx":{"e":"00-1-1-01"}}'
    )
    names = CustomerState.__struct_fields__
    assert all(getattr(full, n) != getattr(EMPTY_STATE, n) for n in names)
    assert full.evolve() == full
    for name in names:
        changed = full.evolve(**{name: getattr(EMPTY_STATE, name)})
        assert [n for n in names if getattr(changed, n) != getattr(full, n)] == [name]
