"""Table-driven tests of the first rule set, through the public `decide` entry point."""

from __future__ import annotations

import pytest

from pipeline.core.arbitration import decide
from pipeline.core.decision import APPROVED, DUPLICATE, MERGED, RECORDED, SUPPRESSED
from pipeline.core.policy import DAY_MS, FrequencyCap, Policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from tests.factories import T0, consent, decide_all, proposal

POLICY = Policy()
MIN = 60_000


def run(events, policy=POLICY):
    return decide_all(events, policy)


@pytest.mark.parametrize(
    ("history", "candidate", "outcome", "rule"),
    [
        ([], proposal(category="marketing"), SUPPRESSED, "consent"),
        ([], proposal(category="service", department="service"), APPROVED, None),
        ([], proposal(category="transactional"), APPROVED, None),
        ([consent(True)], proposal(category="marketing", at=T0 + 1), APPROVED, None),
        (
            [consent(True), consent(False, "email", "marketing", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            SUPPRESSED,
            "consent",
        ),
        (
            [consent(True), consent(False, "sms", "marketing", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            APPROVED,
            None,
        ),
        (
            [consent(False, "email", "marketing", at=T0), consent(True, "all", "all", at=T0 + 5)],
            proposal(category="marketing", at=T0 + 10),
            APPROVED,
            None,
        ),
        ([consent(True)], proposal(category="sales", at=T0 + 1, channel="sms"), APPROVED, None),
        ([consent(False)], proposal(category="service", at=T0 + 1), SUPPRESSED, "consent"),
    ],
)
def test_consent(history, candidate, outcome, rule):
    decisions, _ = run([*history, candidate])
    assert decisions[-1].outcome == outcome
    assert decisions[-1].rule == rule
    assert all(d.outcome == RECORDED for d in decisions[:-1])


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


@pytest.mark.parametrize("kind", ["proposal", "signal"])
def test_replayed_event_id_is_duplicate_and_changes_nothing(kind):
    ev = proposal(category="service", event_id="same") if kind == "proposal" else consent(True)
    decisions, state = run([ev])
    again, state2 = decide(state, ev, POLICY, ev.occurred_at + 5)
    assert again.outcome == DUPLICATE
    assert again.action is None
    assert state2 == state
    assert decisions[0].decision_id in again.reason


def test_replay_memory_is_bounded():
    policy = Policy(replay_memory=3)
    events = [proposal(category="service", at=T0 + i) for i in range(5)]
    _, state = run(events, policy)
    assert len(state.seen) == 3
    assert [e.event_id in state.seen for e in events] == [False, False, True, True, True]


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [(T0 - 1, SUPPRESSED), (T0, SUPPRESSED), (T0 + 1, APPROVED), (None, APPROVED)],
)
def test_expired_proposals(expires_at, expected):
    decisions, _ = run([proposal(category="service", expires_at=expires_at)])
    assert decisions[0].outcome == expected


def test_approved_action_ids_are_deterministic_and_trace_is_ordered():
    ev = proposal(category="service", event_id="x1", trigger="t1")
    a, _ = decide(EMPTY_STATE, ev, POLICY, T0)
    b, _ = decide(EMPTY_STATE, ev, POLICY, T0)
    assert a == b
    assert a.action is not None and a.action.action_id.startswith("a-")
    assert [s.rule for s in a.trace] == [
        "replay",
        "eligibility",
        "duplicate_merge",
        "consent",
        "frequency_cap",
    ]
    assert a.policy_version == POLICY.policy_version


def test_state_round_trips_through_bytes():
    events = [consent(True), proposal(at=T0 + 1, trigger="t"), proposal(at=T0 + 2)]
    _, state = run(events)
    assert CustomerState.from_bytes(state.to_bytes()) == state
