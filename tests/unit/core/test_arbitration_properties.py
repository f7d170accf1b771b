"""Invariants of `decide` under the default rules over random event sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.arbitration import decide
from pipeline.core.decision import APPROVED
from pipeline.core.policy import FrequencyCap, Policy
from pipeline.core.rules.frequency_caps import used
from pipeline.core.state import EMPTY_STATE, Contact
from tests.factories import T0, consent, proposal

MIN = 60_000
POLICY = Policy(
    caps=(
        FrequencyCap("two-per-10min-channel", limit=2, window_ms=10 * MIN, scope="channel"),
        FrequencyCap("four-per-hour", limit=4, window_ms=60 * MIN, scope="all"),
    ),
    merge_window_ms=5 * MIN,
)

event_st = st.one_of(
    st.builds(
        lambda dt, ch, cat, trig, eid: (
            dt,
            proposal(
                channel=ch,
                category=cat,
                trigger=trig,
                event_id=f"p{eid}",
                department="service" if cat == "service" else "marketing",
            ),
        ),
        st.integers(0, 3 * MIN),
        st.sampled_from(["email", "sms", "chat"]),
        st.sampled_from(["marketing", "sales", "service", "transactional"]),
        st.one_of(st.none(), st.sampled_from(["t1", "t2", "t3"])),
        st.integers(0, 40),
    ),
    st.builds(
        lambda dt, granted, ch: (dt, consent(granted, ch)),
        st.integers(0, 3 * MIN),
        st.booleans(),
        st.sampled_from(["email", "sms", "all"]),
    ),
)


def replay(seq):
    state, at, out = EMPTY_STATE, T0, []
    for dt, ev in seq:
        at += dt
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "occurred_at": at})
        d, state = decide(state, ev, POLICY, at)
        out.append((ev, d))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, max_size=60))
def test_no_cap_is_ever_exceeded(seq):
    approved: list[Contact] = []
    for ev, d in replay(seq):
        if d.outcome != APPROVED:
            continue
        p = ev.proposal
        approved.append(Contact(d.decided_at, ev.channel, p.category, ev.department))
        for cap in POLICY.caps:
            value = {"channel": ev.channel, "all": None}[cap.scope]
            assert used(cap, tuple(approved), value, d.decided_at) <= cap.limit


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, max_size=60))
def test_one_approved_action_per_trigger_per_merge_window(seq):
    last: dict[str, int] = {}
    for ev, d in replay(seq):
        if d.outcome == APPROVED and ev.trigger is not None:
            prev = last.get(ev.trigger)
            assert prev is None or d.decided_at - prev >= POLICY.merge_window_ms
            last[ev.trigger] = d.decided_at


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, max_size=40))
def test_same_inputs_give_same_decisions(seq):
    assert [d for _, d in replay(seq)] == [d for _, d in replay(seq)]
