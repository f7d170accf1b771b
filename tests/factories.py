"""Builders for test events: short to write, complete enough for every rule."""

from __future__ import annotations

import itertools
from typing import Any

from pipeline.contracts.events import AgentEvent, Proposal, Signal

_ids = itertools.count()
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def proposal(
    customer: str = "c1",
    at: int = T0,
    *,
    event_id: str | None = None,
    agent: str = "marketing-bot",
    department: str = "marketing",
    channel: str = "email",
    trigger: str | None = None,
    action: str = "message",
    category: str = "marketing",
    priority: int = 50,
    **extra: Any,
) -> AgentEvent:
    return AgentEvent(
        event_id=event_id or f"e{next(_ids)}",
        customer_id=customer,
        occurred_at=at,
        kind="proposal",
        agent=agent,
        department=department,
        channel=channel,
        trigger=trigger,
        proposal=Proposal(action=action, category=category, priority=priority, **extra),
    )


def signal(
    type_: str,
    customer: str = "c1",
    at: int = T0,
    *,
    event_id: str | None = None,
    agent: str = "crm",
    **attributes: str,
) -> AgentEvent:
    return AgentEvent(
        event_id=event_id or f"e{next(_ids)}",
        customer_id=customer,
        occurred_at=at,
        kind="signal",
        agent=agent,
        department="system",
        signal=Signal(type=type_, attributes=attributes),
    )


def consent(
    granted: bool, channel: str = "all", purpose: str = "all", customer: str = "c1", at: int = T0
) -> AgentEvent:
    return signal(
        "consent_changed",
        customer,
        at,
        channel=channel,
        purpose=purpose,
        granted="true" if granted else "false",
    )


def decide_all(events, policy, state=None):
    """Feed events through the pure core in order; the decisions and the final state."""
    from pipeline.core.arbitration import decide
    from pipeline.core.state import EMPTY_STATE

    state = EMPTY_STATE if state is None else state
    decisions = []
    for ev in events:
        d, state = decide(state, ev, policy, ev.occurred_at)
        decisions.append(d)
    return decisions, state


def policy_record_value(
    text: str,
    proposed_by: str | None = None,
    approved_by: str | None = None,
    *,
    at: int = 2,
    by: str | None = None,
) -> bytes:
    """A `policies` record of the document `text`, written at `at` by `by` (else the
    approver, the proposer or mallory): the shape a forger or the CLI would produce."""
    from pipeline.contracts.policy_record import PolicyRecord, encode_policy_record
    from pipeline.core.policy_document import load_policy

    policy = load_policy(text)
    return encode_policy_record(
        PolicyRecord(
            version=policy.version,
            policy_version=policy.policy_version,
            content_hash=policy.content_hash,
            document=text,
            published_at=at,
            published_by=by or approved_by or proposed_by or "mallory",
            proposed_by=proposed_by,
            proposed_at=at - 1 if proposed_by else None,
            approved_by=approved_by,
            approved_at=at if approved_by else None,
        )
    )
