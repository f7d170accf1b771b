"""Invariants of `decide` with every rule switched on, over random event sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.arbitration import decide
from pipeline.core.decision import EMITTING
from pipeline.core.policy import (
    HOUR_MS,
    FrequencyCap,
    KillSwitch,
    OfferArbitration,
    Policy,
    QuietHours,
    ServiceFirst,
)
from pipeline.core.state import EMPTY_STATE, CustomerState
from tests.factories import T0, consent, proposal, signal

MIN = 60_000
AGENTS = ("care-bot", "billing-bot", "upsell-bot", "promo-bot", "rogue-bot")
POLICY = Policy(
    caps=(FrequencyCap("five-per-hour", limit=5, window_ms=HOUR_MS, scope="all"),),
    merge_window_ms=5 * MIN,
    authority=("care-bot", "billing-bot", "upsell-bot"),
    kill_switch=KillSwitch(agents=frozenset({"rogue-bot"})),
    service_first=ServiceFirst(complaint_cooldown_ms=30 * MIN),
    quiet_hours=QuietHours("21:00", "08:00", "UTC", {"marketing": "defer", "sales": "suppress"}),
    offers=OfferArbitration(window_ms=2 * HOUR_MS),
)

proposal_st = st.builds(
    lambda agent, cat, action, ch, trig, prio, prop, facts, offer_id: proposal(
        agent=agent,
        category=cat,
        department=cat,
        action=action,
        channel=ch,
        trigger=trig,
        priority=prio,
        propensity=prop,
        asserts=facts,
        offer_id=offer_id if action == "offer" else None,
    ),
    st.sampled_from(AGENTS),
    st.sampled_from(["marketing", "sales", "service", "transactional"]),
    st.sampled_from(["message", "offer", "answer"]),
    st.sampled_from(["email", "sms", "chat"]),
    st.one_of(st.none(), st.sampled_from(["t1", "t2"])),
    st.integers(1, 100),
    st.one_of(st.none(), st.floats(0.01, 1.0)),
    st.dictionaries(st.sampled_from(["price", "plan"]), st.sampled_from(["a", "b"]), max_size=2),
    st.sampled_from(["o1", "o2"]),
)
signal_st = st.one_of(
    st.builds(lambda g: consent(g), st.sampled_from([True, True, True, False])),
    st.builds(lambda k: signal("case_opened", case_id=k), st.sampled_from(["k1", "k2"])),
    st.builds(lambda k: signal("case_resolved", case_id=k), st.sampled_from(["k1", "k2"])),
    st.builds(lambda s: signal("sentiment", score=s), st.sampled_from(["-0.9", "0.4"])),
    st.builds(
        lambda tz: signal("profile_updated", timezone=tz),
        st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
    ),
)
event_st = st.tuples(
    st.integers(0, 90 * MIN),
    st.integers(0, 3).flatmap(lambda k: signal_st if k == 0 else proposal_st),
    st.integers(0, 500),
)


def replay(seq, through_bytes: bool = False):
    """Start opted in at 18:00 UTC so that sequences cross the quiet hours."""
    state, at, out = EMPTY_STATE, T0 + 18 * HOUR_MS, []
    for dt, ev, eid in [(0, consent(True), -1), *seq]:
        at += dt
        fields = {f: getattr(ev, f) for f in ev.__slots__}
        ev = type(ev)(**{**fields, "occurred_at": at, "event_id": f"e{eid}"})
        d, state = decide(state, ev, POLICY, at)
        if through_bytes:
            state = CustomerState.from_bytes(state.to_bytes())
        out.append((ev, d))
    return out[1:]


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, max_size=60))
def test_never_two_emitted_offers_within_the_offer_window(seq):
    last: int | None = None
    for ev, d in replay(seq):
        if d.outcome in EMITTING and ev.proposal and ev.proposal.action == "offer":
            assert last is None or d.decided_at - last >= POLICY.offers.window_ms
            last = d.decided_at


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, max_size=60))
def test_a_fact_changes_only_by_a_correction_of_higher_authority(seq):
    told: dict[str, tuple[str, str]] = {}  # fact -> (value, agent who said it)
    for ev, d in replay(seq):
        if d.outcome not in EMITTING or ev.proposal is None:
            continue
        for key, value in ev.proposal.asserts.items():
            known = told.get(key)
            if known is not None and known[0] != value:
                assert POLICY.rank(ev.agent) < POLICY.rank(known[1]), (key, known, ev.agent)
            if known is None or known[0] != value:
                told[key] = (value, ev.agent)


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, max_size=50))
def test_full_rule_set_is_deterministic_and_state_survives_bytes(seq):
    first = [d for _, d in replay(seq)]
    assert first == [d for _, d in replay(seq)]
    assert first == [d for _, d in replay(seq, through_bytes=True)]


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, max_size=50))
def test_killed_agents_never_act_and_deferrals_point_forward(seq):
    for ev, d in replay(seq):
        if ev.agent == "rogue-bot" and ev.proposal is not None:
            assert d.action is None
        if d.action is not None and d.action.not_before is not None:
            assert d.action.not_before > d.decided_at
