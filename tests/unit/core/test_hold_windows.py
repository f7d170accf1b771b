"""Hold windows: park competitors for one trigger, release the best one at the deadline."""

from __future__ import annotations

import pytest

from pipeline.core.arbitration import decide, release
from pipeline.core.decision import APPROVED, HELD, MERGED, SUPPRESSED, Wakeup
from pipeline.core.hold_windows import hold_id_for
from pipeline.core.policy import HoldWindows, Policy
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from tests.factories import T0, consent, decide_all, proposal

HOLD = 3_000
POLICY = Policy(
    holds=HoldWindows(hold_ms={"message": HOLD, "offer": HOLD}),
    merge_window_ms=HOLD,
    authority=("care-bot", "sales-bot"),
)
AGENTS = ["promo-bot", "sales-bot", "care-bot", "winback-bot", "notify-bot"]


def five(trigger="t1", at=T0, priorities=(10, 50, 90, 30, 70), category="service"):
    return [
        proposal(
            at=at + i,
            agent=agent,
            trigger=trigger,
            priority=prio,
            category=category,
            department="service",
        )
        for i, (agent, prio) in enumerate(zip(AGENTS, priorities, strict=True))
    ]


def feed(events, policy=POLICY, state: CustomerState = EMPTY_STATE):
    return decide_all(events, policy, state)


def release_all(state, decisions, policy=POLICY):
    out = []
    for d in decisions:
        if d.wakeup is not None:
            released, state = release(state, "c1", d.wakeup.hold_id, policy)
            out.extend(released)
    return out, state


def test_five_agents_one_trigger_one_action_the_best_listing_all_five():
    events = five()
    held, state = feed(events)
    assert [d.outcome for d in held] == [HELD] * 5
    assert sum(1 for d in held if d.wakeup is not None) == 1
    assert held[0].wakeup is not None and held[0].wakeup.deadline == T0 + HOLD
    final, state = release_all(state, held)
    outcomes = {d.event_id: d.outcome for d in final}
    winner = next(d for d in final if d.outcome == APPROVED)
    assert winner.event_id == events[2].event_id  # priority 90
    assert sorted(outcomes.values()) == [APPROVED] + [MERGED] * 4
    assert set(winner.action.source_event_ids) == {e.event_id for e in events}
    assert set(winner.action.agents) == set(AGENTS)
    assert winner.decided_at == T0 + HOLD
    assert all(d.merged_into == winner.decision_id for d in final if d.outcome == MERGED)
    assert state.holds == {}


def test_the_same_five_over_two_windows_give_two_actions():
    events = five()
    late = [
        e.__class__(**{**_fields(e), "occurred_at": T0 + HOLD + i})
        for i, e in enumerate(events[3:])
    ]
    held, state = feed([*events[:3], *late])
    assert sum(1 for d in held if d.wakeup is not None) == 2
    final, _ = release_all(state, held)
    approved = [d for d in final if d.outcome == APPROVED]
    assert len(approved) == 2
    assert sorted(len(d.action.source_event_ids) for d in approved) == [2, 3]


def test_releasing_twice_or_an_unknown_hold_changes_nothing():
    held, state = feed(five())
    assert held[0].wakeup is not None
    hold_id = held[0].wakeup.hold_id
    first, after = release(state, "c1", hold_id, POLICY)
    again, after2 = release(after, "c1", hold_id, POLICY)
    assert len(first) == 5 and again == [] and after2 == after
    assert release(EMPTY_STATE, "c1", "h-unknown", POLICY) == ([], EMPTY_STATE)


def test_a_winner_blocked_by_the_rules_gives_way_to_the_next_best():
    events = five(category="marketing")  # no opt-in yet ...
    _, state = feed([consent(True, "email", "marketing", at=T0 - 10)])
    blocked = proposal(
        at=T0 + 10, agent="sms-bot", trigger="t1", priority=100, category="marketing", channel="sms"
    )
    held, state = feed([*events, blocked], state=state)
    final, _ = release_all(state, held)
    by_event = {d.event_id: d for d in final}
    assert by_event[blocked.event_id].outcome == SUPPRESSED
    assert by_event[blocked.event_id].rule == "consent"
    assert by_event[events[2].event_id].outcome == APPROVED


@pytest.mark.parametrize(
    ("priorities", "expected_agent"),
    [
        ((50, 50, 50, 50, 50), "care-bot"),  # a tie goes to the highest authority
        ((50, 60, 50, 50, 50), "sales-bot"),
        ((10, 20, 30, 40, 50), "notify-bot"),
    ],
)
def test_ranking_and_ties(priorities, expected_agent):
    held, state = feed(five(priorities=priorities))
    final, _ = release_all(state, held)
    assert next(d for d in final if d.outcome == APPROVED).action.agents[0] == expected_agent


def test_hold_zero_or_no_trigger_decides_at_once():
    decisions, _ = feed(
        [
            proposal(category="service", trigger=None),
            proposal(category="service", action="answer", trigger="t9"),
        ]
    )
    assert [d.outcome for d in decisions] == [APPROVED, APPROVED]


def test_merge_key_can_widen_to_category():
    policy = Policy(holds=HoldWindows(hold_ms={"message": HOLD}, merge_key="trigger+category"))
    events = [
        proposal(category="service", trigger="t"),
        proposal(category="transactional", trigger="t", at=T0 + 1),
    ]
    held, _ = feed(events, policy)
    assert sum(1 for d in held if d.wakeup is not None) == 2


def test_holds_survive_the_state_bytes():
    _, state = feed(five())
    assert CustomerState.from_bytes(state.to_bytes()) == state


@pytest.mark.parametrize(
    ("yaml_text", "line", "message"),
    [
        ("version: 1.0.0\nholds:\n  hold_ms:\n    mesage: 5\n", 4, "unknown key"),
        ("version: 1.0.0\nholds:\n  hold_ms:\n    offer: -1\n", 4, ">= 0"),
        ("version: 1.0.0\nholds:\n  merge_key: agent\n", 3, "unknown merge key"),
    ],
)
def test_policy_documents_validate_holds(yaml_text, line, message):
    with pytest.raises(PolicyError) as err:
        load_policy(yaml_text)
    assert err.value.issues[0].line == line and message in err.value.issues[0].message


def test_policy_document_reads_holds():
    policy = load_policy("version: 1.0.0\nholds:\n  hold_ms: {offer: 5000}\n")
    assert policy.holds == HoldWindows(hold_ms={"offer": 5000})


def _fields(e):
    return {f: getattr(e, f) for f in e.__slots__}


def test_a_latecomer_after_the_release_is_merged_not_held_again():
    held, state = feed(five())
    _, state = release_all(state, held)
    late = proposal(at=T0 + 100, agent="late-bot", trigger="t1", category="service")
    decision, _ = decide(state, late, POLICY, late.occurred_at)
    assert decision.outcome == MERGED and decision.wakeup is None


def test_replay_and_what_if_follow_holds_through_their_release():
    from pipeline.contracts.codec import decode_record, encode_event
    from pipeline.core.policy import DEFAULT_POLICY
    from pipeline.core.replay import MATCH, catalog, replay_all
    from pipeline.core.whatif import what_if
    from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
    from pipeline.settings import Settings

    settings = Settings()
    bp = BatchProcessor(settings, policy=lambda: POLICY, clock=lambda: 1.0)
    events = [*five(), *five(trigger="t2", at=T0 + 2 * HOLD)]
    recs = [InputRecord(b"c1", encode_event(e, "json"), 0, i, None) for i, e in enumerate(events)]
    store = DictStateStore()
    outputs = list(bp.process_and_save(recs, store).outputs)
    for wake in [o for o in outputs if o.topic == settings.topics.wakeups]:
        result = bp.release(InputRecord(b"c1", wake.value, 0, 0, None), store)
        for w in result.state_writes:
            store.save(w.partition, w.key, w.value)
        outputs.extend(result.outputs)
    audits = [decode_record("audit_record", o.value) for o in outputs if o.topic == "audit"]
    assert len(audits) == 20  # ten held, ten final
    results = replay_all(audits, catalog([POLICY]))
    assert [r.status for r in results] == [MATCH] * 20

    report = what_if(events, DEFAULT_POLICY, POLICY)
    assert report.new_outcomes == {APPROVED: 2, MERGED: 8}
    assert HELD not in report.new_outcomes and report.events == 10


def test_replay_tells_a_held_events_duplicate_from_its_release():
    """An agent re-sends a held proposal before the hold closes: the worker audits the copy
    as a duplicate, and releases the hold only at its wake-up. Replay must not take the
    duplicate's record for the release's (they share the event id)."""
    from pipeline.contracts.codec import decode_record, encode_event
    from pipeline.core.decision import DUPLICATE
    from pipeline.core.replay import MATCH, catalog, replay_all
    from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
    from pipeline.settings import Settings

    settings = Settings()
    bp = BatchProcessor(settings, policy=lambda: POLICY, clock=lambda: 1.0)
    events = five()
    events.insert(3, events[1])  # the second proposal, sent again while held
    recs = [InputRecord(b"c1", encode_event(e, "json"), 0, i, None) for i, e in enumerate(events)]
    store = DictStateStore()
    outputs = list(bp.process_and_save(recs, store).outputs)
    wake = next(o for o in outputs if o.topic == settings.topics.wakeups)
    outputs += bp.release(InputRecord(b"c1", wake.value, 0, 0, None), store).outputs
    audits = [decode_record("audit_record", o.value) for o in outputs if o.topic == "audit"]
    assert [a["outcome"] for a in audits][:6] == [HELD, HELD, HELD, DUPLICATE, HELD, HELD]
    assert [r.status for r in replay_all(audits, catalog([POLICY]))] == [MATCH] * len(audits)


def test_a_later_event_past_the_deadline_releases_the_hold_before_it_is_decided():
    """In event time the hold closed first: the outcome must not depend on whether its
    wake-up was read before this event (it is the what-if's order too)."""
    from pipeline.contracts.codec import decode_record, encode_event
    from pipeline.core.whatif import final_decisions
    from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
    from pipeline.settings import Settings

    settings = Settings()
    bp = BatchProcessor(settings, policy=lambda: POLICY, clock=lambda: 1.0)
    late = proposal(at=T0 + HOLD + 100, agent="late-bot", trigger="t1", category="service")
    events = [*five(), late]
    recs = [InputRecord(b"c1", encode_event(e, "json"), 0, i, None) for i, e in enumerate(events)]
    store = DictStateStore()
    result = bp.process_and_save(recs, store)
    audits = [decode_record("audit_record", o.value) for o in result.outputs if o.topic == "audit"]
    finals = {a["event_id"]: a["outcome"] for a in audits if a["outcome"] != HELD}
    assert finals == {
        e.event_id: d.outcome for e, d in zip(events, final_decisions(events, POLICY), strict=True)
    }
    assert finals[late.event_id] == MERGED  # a latecomer to the released hold
    wake = next(o for o in result.outputs if o.topic == settings.topics.wakeups)
    assert bp.release(InputRecord(b"c1", wake.value, 0, 0, None), store).outputs == []


def test_the_wake_up_record_is_the_hold_id_and_deadline_of_the_new_hold():
    """Its bytes are a wire format (read back by both runtimes' schedules): field order
    and spelling stay as they were when the decision carried the wake-up as a dict."""
    from pipeline.contracts.codec import encode_event
    from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
    from pipeline.settings import Settings

    settings = Settings()
    bp = BatchProcessor(settings, policy=lambda: POLICY, clock=lambda: 1.0)
    events = five()
    held, _ = feed(events)
    assert [d.wakeup for d in held[1:]] == [None] * 4
    wakeup = held[0].wakeup
    assert wakeup == Wakeup(hold_id_for("c1", "t1", events[0].event_id), T0 + HOLD)
    recs = [InputRecord(b"c1", encode_event(e, "json"), 0, i, None) for i, e in enumerate(events)]
    result = bp.process_and_save(recs, DictStateStore())
    [wake] = [o for o in result.outputs if o.topic == settings.topics.wakeups]
    assert wake.key == b"c1"
    assert wake.value == (
        b'{"customer_id":"c1","hold_id":"%s","deadline":%d}'
        % (wakeup.hold_id.encode(), wakeup.deadline)
    )
