"""Hold windows (digest): park proposals for one merge key, release the best one at the
deadline.

"One customer event should not become five competing triggers": agents reacting to the same
trigger within `hold_ms` join one hold; at its deadline (event time) the highest-scoring
proposal goes through the normal rules and the others are merged into it. Holds live in
the customer state, so the changelog keeps them through crashes and rebalances; the shell
releases them when the wake-up record for the hold comes back in-stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pipeline.contracts.codec import canonical_event_json, decode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.decision import HELD, HOLD, Decision, RuleStep, Wakeup
from pipeline.core.policy import Policy
from pipeline.core.rules.offer_arbitration import score
from pipeline.core.state import CustomerState, Hold

NAME = "hold_window"


def merge_key(event: AgentEvent, policy: Policy) -> str:
    assert event.proposal is not None
    if policy.holds.merge_key == "trigger+category":
        return f"{event.trigger}|{event.proposal.category}"
    return event.trigger or ""


def hold_id_for(customer_id: str, key: str, first_event_id: str) -> str:
    digest = hashlib.blake2b(f"{customer_id}\x00{key}\x00{first_event_id}".encode(), digest_size=8)
    return "h-" + digest.hexdigest()


def open_hold(state: CustomerState, key: str, at: int) -> tuple[str, Hold] | None:
    """The hold still collecting for `key` at event time `at`, if any."""
    for hold_id, hold in state.holds.items():
        if hold.key == key and at < hold.deadline:
            return hold_id, hold
    return None


def park(
    state: CustomerState, event: AgentEvent, policy: Policy, now: int, decision_id: str
) -> tuple[Decision, dict[str, Any]]:
    """Hold the proposal: a new hold (the decision carries its wake-up) or join one."""
    assert event.proposal is not None
    key = merge_key(event, policy)
    found = open_hold(state, key, now)
    holds = dict(state.holds)
    wakeup: Wakeup | None = None
    if found is None:
        hold_id = hold_id_for(event.customer_id, key, event.event_id)
        deadline = now + policy.holds.hold_ms[event.proposal.action]
        holds[hold_id] = Hold(key, deadline, (canonical_event_json(event),))
        wakeup = Wakeup(hold_id, deadline)
        reason = f"held for {key} until {deadline} as {hold_id}"
    else:
        hold_id, hold = found
        holds[hold_id] = hold._replace(items=(*hold.items, canonical_event_json(event)))
        reason = f"joined {hold_id} for {key} ({len(hold.items) + 1} held) until {hold.deadline}"
    step = RuleStep(NAME, HOLD, reason)
    decision = Decision.for_event(
        event, decision_id, policy.policy_version, now, HELD, NAME, reason, (step,), wakeup=wakeup
    )
    return decision, {"holds": holds}


def held_events(customer_id: str, hold: Hold) -> list[AgentEvent]:
    key = customer_id.encode()
    return [decode_event(key, item.encode(), max_bytes=1 << 30) for item in hold.items]


def ranked(events: Sequence[AgentEvent], policy: Policy) -> list[AgentEvent]:
    """Best first: arbitration score, then agent precedence, then who came first."""

    def order(e: AgentEvent) -> tuple[float, int, int, str]:
        assert e.proposal is not None
        return (-score(e.proposal, policy.offers), policy.rank(e.agent), e.occurred_at, e.event_id)

    return sorted(events, key=order)
