"""What an agent needs to ground its next step on, and what the tower would decide now.

The read side for agents (`/api/v1/customers/{id}/context`, `/api/v1/preflight`): pure
functions of the stored state and the policy, so the context says exactly what the rules
will see, and a preflight runs the very code that decides the real event.
"""

from __future__ import annotations

from typing import Any

from pipeline.contracts.events import AgentEvent
from pipeline.core.arbitration import decide, release
from pipeline.core.decision import Decision
from pipeline.core.policy import Policy
from pipeline.core.rules.frequency_caps import usage
from pipeline.core.rules.quiet_hours import quiet_until
from pipeline.core.state import CustomerState

#: the newest contacts the context lists
RECENT_CONTACTS = 20


def agent_context(
    customer_id: str, state: CustomerState, policy: Policy, as_of: int
) -> dict[str, Any]:
    """The customer as the rules see them at `as_of` (ms, event time): caps headroom and
    quiet hours are computed for a proposal occurring then."""
    qh = policy.quiet_hours
    timezone = state.timezone or qh.timezone
    quiet = quiet_until(qh, timezone, as_of) if qh.categories else None
    offer, handoff = state.offer, state.handoff
    window = policy.offers.window_ms
    return {
        "customer_id": customer_id,
        "known": state.events > 0,
        "policy_version": policy.policy_version,
        "as_of": as_of,
        "consents": [
            {"channel": channel, "purpose": purpose, "granted": mark.granted, "at": mark.at}
            for scope, mark in state.consents.items()
            for channel, _, purpose in [scope.partition(":")]
        ],
        "open_cases": [{"case_id": k, "opened_at": at} for k, at in state.open_cases.items()],
        "facts_told": [
            {"fact": k, "value": f.value, "agent": f.agent, "at": f.at}
            for k, f in state.facts.items()
        ],
        "facts_known": [{"fact": k, "value": v} for k, v in state.known.items()],
        "recent_contacts": [
            {"at": c.at, "channel": c.channel, "category": c.category, "department": c.department}
            for c in state.contacts[-RECENT_CONTACTS:]
        ],
        "caps": [
            {
                "cap": cap.name,
                "scope": cap.scope,
                "value": value,
                "limit": cap.limit,
                "used": n,
                "headroom": max(0, cap.limit - n),
                "window_ms": cap.window_ms,
                "exempt_categories": sorted(cap.exempt_categories),
            }
            for cap, value, n in usage(state.contacts, policy.caps, as_of)
        ],
        "offer": None
        if offer is None or (window and offer.at + window <= as_of)
        else {
            "offer_id": offer.offer_id,
            "agent": offer.agent,
            "since": offer.at,
            "until": offer.at + window if window else None,
            "score": offer.score,
        },
        "holds": [
            {"hold_id": k, "key": h.key, "deadline": h.deadline, "proposals": len(h.items)}
            for k, h in state.holds.items()
        ],
        "escalation": {
            "needs_human": handoff is not None,
            "since": None if handoff is None else handoff.at,
            "reason": None if handoff is None else handoff.reason,
            "action_id": None if handoff is None else handoff.action_id,
        },
        "timezone": timezone,
        "quiet_hours": {
            "start": qh.start,
            "end": qh.end,
            "timezone": timezone,
            "categories": dict(qh.categories),
            "quiet_now": quiet is not None,
            "next_allowed_send": as_of if quiet is None else quiet,
        },
        "experiments": [
            {"experiment": k, "arm": e.arm, "exposed_at": e.at} for k, e in state.exposures.items()
        ],
    }


def preflight(state: CustomerState, event: AgentEvent, policy: Policy) -> Decision:
    """The decision `event` would get if it were the customer's next record: the holds its
    time has passed close first, then it is decided, in event time, as the runtimes do
    (`BatchProcessor.process`). Nothing is kept."""
    for hold_id, hold in list(state.holds.items()):
        if hold.deadline <= event.occurred_at:
            _, state = release(state, event.customer_id, hold_id, policy)
    decision, _ = decide(state, event, policy, event.occurred_at)
    return decision
