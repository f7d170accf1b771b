"""The Quix Streams peer's rule subset (bench/quix_rules.py): each rule on its own, and the
same decisions as Tower's core on `bench/policy.subset.yaml` over the simulator's traffic."""

from __future__ import annotations

import collections

import orjson
import pytest

from bench.quix_rules import (
    DAY_MS,
    MERGE_WINDOW_MS,
    REPLAY_MEMORY,
    MemoryState,
    decide,
)
from pipeline.contracts.events import AgentEvent, Proposal, Signal
from pipeline.core.arbitration import decide as tower_decide
from pipeline.core.policy_document import load_policy_file
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.simulator import AgentSimulator

SUBSET_POLICY = "bench/policy.subset.yaml"
T0 = 1_767_225_600_000
_ids = iter(range(10**9))


def consent(
    at: int, channel: str = "all", purpose: str = "all", granted: bool = True
) -> AgentEvent:
    attrs = {"channel": channel, "purpose": purpose, "granted": "true" if granted else "false"}
    return AgentEvent(
        f"e{next(_ids)}",
        "c1",
        at,
        "signal",
        "crm",
        "system",
        signal=Signal("consent_changed", attrs),
    )


def message(at: int) -> AgentEvent:
    return AgentEvent(
        f"e{next(_ids)}", "c1", at, "signal", "crm", "system", signal=Signal("message_received")
    )


def proposal(
    at: int,
    channel: str = "email",
    category: str = "marketing",
    action: str = "message",
    trigger: str | None = None,
    offer_id: str | None = None,
) -> AgentEvent:
    p = Proposal(action=action, category=category, priority=50, content="hi", offer_id=offer_id)
    return AgentEvent(
        f"e{next(_ids)}", "c1", at, "proposal", "bot", "marketing", channel, None, trigger, p
    )


def offer(at: int, trigger: str | None = None) -> AgentEvent:
    return proposal(at, category="sales", action="offer", trigger=trigger, offer_id="upgrade-pro")


def run(events: list[AgentEvent]) -> list[tuple[str, str | None]]:
    """(outcome, rule) of each event, the state round-tripped through JSON as Quix stores it."""
    state = MemoryState()
    out = []
    for event in events:
        audit, action = decide(state, event)
        state.data = orjson.loads(orjson.dumps(state.data))
        assert (action is not None) == (audit["outcome"] == "approved")
        if action is not None:
            assert audit["action_id"] == action["action_id"]
            assert action["source_event_id"] == event.event_id
        out.append((audit["outcome"], audit["rule"]))
    return out


OPEN = consent(T0)
APPROVED = ("approved", None)
RECORDED = ("recorded", None)
CONSENT = ("suppressed", "consent")
CAP = ("suppressed", "frequency_cap")
OFFER = ("suppressed", "offer_arbitration")
MERGED = ("merged", "duplicate_merge")

CASES: dict[str, tuple[list[AgentEvent], list[tuple[str, str | None]]]] = {
    "signals are recorded": ([OPEN, message(T0 + 1)], [RECORDED, RECORDED]),
    "marketing needs an opt-in": ([proposal(T0)], [CONSENT]),
    "service needs none": ([proposal(T0, category="service", action="answer")], [APPROVED]),
    "transactional needs none": ([proposal(T0, "push", "transactional")], [APPROVED]),
    "opt-in for all": ([OPEN, proposal(T0 + 1)], [RECORDED, APPROVED]),
    "channel withdrawn after all granted": (
        [OPEN, consent(T0 + 1, "email", granted=False), proposal(T0 + 2), proposal(T0 + 3, "sms")],
        [RECORDED, RECORDED, CONSENT, APPROVED],
    ),
    "purpose withdrawn on every channel": (
        [OPEN, consent(T0 + 1, purpose="sales", granted=False), offer(T0 + 2), proposal(T0 + 3)],
        [RECORDED, RECORDED, CONSENT, APPROVED],
    ),
    "newest mark wins": (
        [consent(T0, "email", granted=False), consent(T0 + 1), proposal(T0 + 2)],
        [RECORDED, RECORDED, APPROVED],
    ),
    "a tie goes to the more general mark": (
        [consent(T0, "email", granted=False), consent(T0), proposal(T0 + 1)],
        [RECORDED, RECORDED, APPROVED],
    ),
    "three per channel per day": (
        [OPEN, *(proposal(T0 + i) for i in range(1, 5)), proposal(T0 + 5, "sms")],
        [RECORDED, APPROVED, APPROVED, APPROVED, CAP, APPROVED],
    ),
    "the cap window rolls": (
        [OPEN, *(proposal(T0 + i) for i in range(1, 4)), proposal(T0 + 1 + DAY_MS)],
        [RECORDED, APPROVED, APPROVED, APPROVED, APPROVED],
    ),
    "transactional is exempt from the cap and does not count": (
        [
            OPEN,
            *(proposal(T0 + i, category="transactional") for i in range(1, 5)),
            *(proposal(T0 + i) for i in range(5, 9)),
        ],
        [RECORDED, *[APPROVED] * 4, APPROVED, APPROVED, APPROVED, CAP],
    ),
    "a blocked proposal is no contact": (
        [
            OPEN,
            consent(T0 + 1, "email", granted=False),
            *(proposal(T0 + i) for i in range(2, 5)),
            consent(T0 + 5, "email"),
            proposal(T0 + 6),
        ],
        [RECORDED, RECORDED, CONSENT, CONSENT, CONSENT, RECORDED, APPROVED],
    ),
    "one offer per day": (
        [OPEN, offer(T0 + 1), offer(T0 + 2), offer(T0 + 1 + DAY_MS)],
        [RECORDED, APPROVED, OFFER, APPROVED],
    ),
    "an offer_id makes a message an offer": (
        [OPEN, offer(T0 + 1), proposal(T0 + 2, "sms", offer_id="x")],
        [RECORDED, APPROVED, OFFER],
    ),
    "one action per trigger": (
        [OPEN, proposal(T0 + 1, trigger="t"), proposal(T0 + 2, "sms", trigger="t")],
        [RECORDED, APPROVED, MERGED],
    ),
    "merge window ends": (
        [
            OPEN,
            proposal(T0 + 1, trigger="t"),
            proposal(T0 + MERGE_WINDOW_MS, "sms", trigger="t"),
            proposal(T0 + 1 + MERGE_WINDOW_MS, "sms", trigger="t"),
        ],
        [RECORDED, APPROVED, MERGED, APPROVED],
    ),
    "a suppressed proposal answers no trigger": (
        [proposal(T0, trigger="t"), proposal(T0 + 1, "chat", "service", "answer", trigger="t")],
        [CONSENT, APPROVED],
    ),
    "merge comes before consent": (
        [
            OPEN,
            proposal(T0 + 1, "push", "transactional", trigger="t"),
            consent(T0 + 2, granted=False),
            proposal(T0 + 3, trigger="t"),
        ],
        [RECORDED, APPROVED, RECORDED, MERGED],
    ),
    "other triggers are not merged": (
        [OPEN, proposal(T0 + 1, trigger="a"), proposal(T0 + 2, "sms", trigger="b")],
        [RECORDED, APPROVED, APPROVED],
    ),
}


@pytest.mark.parametrize("events, expected", CASES.values(), ids=CASES.keys())
def test_rules(events: list[AgentEvent], expected: list[tuple[str, str | None]]) -> None:
    assert run(events) == expected


@pytest.mark.parametrize(
    "first",
    [message(T0 + 1), proposal(T0 + 1), proposal(T0 + 1, "chat", "service", "answer")],
    ids=["signal", "suppressed proposal", "approved proposal"],
)
def test_a_replay_is_a_duplicate_and_changes_nothing(first: AgentEvent) -> None:
    state = MemoryState()
    audit, _ = decide(state, first)
    before = orjson.dumps(state.data)
    again, action = decide(state, first)
    assert (again["outcome"], again["rule"], action) == ("duplicate", "replay", None)
    assert again["event_id"] == first.event_id
    assert orjson.dumps(state.data) == before
    assert audit["outcome"] in again["reason"]


def test_the_replay_memory_is_bounded_oldest_first() -> None:
    state = MemoryState()
    events = [message(T0 + i) for i in range(REPLAY_MEMORY + 1)]
    for event in events:
        decide(state, event)
    seen = state.data["customer"]["seen"]
    assert len(seen) == REPLAY_MEMORY
    assert events[0].event_id not in seen
    assert decide(state, events[0])[0]["outcome"] == "recorded"  # forgotten: decided again
    assert decide(state, events[-1])[0]["outcome"] == "duplicate"


def test_the_action_carries_the_proposal() -> None:
    state = MemoryState()
    decide(state, OPEN)
    event = offer(T0 + 1, trigger="t")
    audit, action = decide(state, event)
    assert action is not None
    assert action["action_id"] == audit["action_id"] == f"c1/{event.event_id}"
    assert (action["channel"], action["action"], action["category"]) == ("email", "offer", "sales")
    assert (action["offer_id"], action["decided_at"]) == ("upgrade-pro", T0 + 1)


def test_the_same_decisions_as_tower_on_the_subset_policy() -> None:
    """Event for event, over the simulator's mix; few customers, so the caps and the offer
    rule fire too."""
    policy = load_policy_file(SUBSET_POLICY)
    tower: dict[str, CustomerState] = {}
    quix: dict[str, MemoryState] = {}
    counts: collections.Counter[tuple[str, str | None]] = collections.Counter()
    for rec in AgentSimulator(customers=40, seed=5).records(4000):
        event = rec.event
        assert event is not None
        decision, tower[event.customer_id] = tower_decide(
            tower.get(event.customer_id, EMPTY_STATE), event, policy, event.occurred_at
        )
        audit, action = decide(quix.setdefault(event.customer_id, MemoryState()), event)
        assert (audit["outcome"], audit["rule"]) == (decision.outcome, decision.rule), event
        assert (action is None) == (decision.action is None)
        counts[(decision.outcome, decision.rule)] += 1
    for rule in ("replay", "consent", "duplicate_merge", "frequency_cap", "offer_arbitration"):
        assert any(r == rule for _, r in counts), f"{rule} never fired: {counts}"
