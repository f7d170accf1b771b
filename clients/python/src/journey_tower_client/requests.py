"""The bodies the client sends and the decisions it reads back: pure, shared by the sync
and the async client, so both send and read exactly the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from journey_tower_client.errors import InvalidRequest, Problem, TowerError

#: what a proposal cannot do without (`agent` can: an agent token names it)
REQUIRED = ("department", "channel", "action", "category")
#: the proposal's own fields (the rest are the event's)
PROPOSAL_FIELDS = (
    "action",
    "category",
    "priority",
    "content",
    "offer_id",
    "offer_value",
    "propensity",
    "asserts",
    "ai_generated",
    "expires_at",
)
EVENT_FIELDS = ("agent", "department", "channel", "conversation_id", "trigger")
#: a proposal's priority when none is given (0..100; arbitration prefers the higher)
DEFAULT_PRIORITY = 50
#: outcomes whose action is published (and so is to be carried out)
EMITTING = frozenset({"approved", "deferred", "escalated"})


def new_event_id() -> str:
    """Made by the client, so a retried request is the same event: the tower decides each
    event id of a customer once, and a retry gets the same decision, never a second action."""
    return f"ev-{uuid.uuid4().hex}"


def proposal_body(
    customer_id: str,
    fields: Mapping[str, Any],
    *,
    event_id: str | None = None,
    occurred_at: int | None = None,
) -> dict[str, Any]:
    """The proposal as JSON; InvalidRequest listing every missing or unknown field."""
    problems = [
        Problem(name, "required for a proposal") for name in REQUIRED if fields.get(name) is None
    ]
    if not customer_id:
        problems.insert(0, Problem("customer_id", "required: the customer to contact"))
    known = set(PROPOSAL_FIELDS) | set(EVENT_FIELDS)
    problems += [Problem(name, "not a proposal field") for name in sorted(set(fields) - known)]
    if problems:
        names = ", ".join(p.field for p in problems)
        raise InvalidRequest(
            f"the proposal is not valid: {names} ("
            + "; ".join(f"{p.field}: {p.message}" for p in problems)
            + ")",
            status=0,
            code="invalid",
            detail=f"{len(problems)} fields are invalid: {names}",
            problems=tuple(problems),
        )
    body: dict[str, Any] = {
        "event_id": event_id or new_event_id(),
        "customer_id": customer_id,
        "kind": "proposal",
        **{k: fields[k] for k in EVENT_FIELDS if fields.get(k) is not None},
        "proposal": {
            "priority": DEFAULT_PRIORITY,
            **{k: fields[k] for k in PROPOSAL_FIELDS if fields.get(k) is not None},
        },
    }
    if occurred_at is not None:
        body["occurred_at"] = occurred_at
    return body


def signal_body(
    customer_id: str,
    type_: str,
    *,
    agent: str | None,
    department: str | None,
    attributes: Mapping[str, str] | None = None,
    channel: str | None = None,
    conversation_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A signal as JSON (what happened to the customer: a consent change, a case opened)."""
    body: dict[str, Any] = {
        "event_id": event_id or new_event_id(),
        "customer_id": customer_id,
        "kind": "signal",
        "department": department or "system",
        "signal": {"type": type_, "attributes": dict(attributes or {})},
    }
    if agent is not None:  # else the agent token's own name
        body["agent"] = agent
    if channel is not None:
        body["channel"] = channel
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return body


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The tower's answer to a proposal or signal. `status` is `decided`, or `pending`
    when the wait ended first (ask `decision()` later, or `wait_decision()`)."""

    event_id: str
    customer_id: str
    status: str
    #: approved, deferred, escalated (carry out `action`); suppressed, merged, duplicate,
    #: withheld (do not send); recorded (a signal)
    outcome: str | None = None
    rule: str | None = None
    reason: str | None = None
    #: the action as published on approved-actions, content transformed by the policy
    action: dict[str, Any] | None = None
    #: ISO-8601 UTC: a deferred action is sent no earlier
    not_before: str | None = None
    audit_id: str | None = None
    policy_version: str | None = None
    #: where a pending decision is asked for later
    location: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def decided(self) -> bool:
        return self.status == "decided"

    @property
    def emitted(self) -> bool:
        """An action was published: approved, deferred (send at `not_before`) or
        escalated (routed to a human)."""
        return self.outcome in EMITTING

    @classmethod
    def from_json(cls, body: Any, location: str | None = None) -> Decision:
        if not isinstance(body, dict) or "event_id" not in body or "status" not in body:
            raise TowerError(f"unexpected decision answer: {body!r:.200}")
        return cls(
            event_id=str(body["event_id"]),
            customer_id=str(body.get("customer_id", "")),
            status=str(body["status"]),
            outcome=body.get("outcome"),
            rule=body.get("rule"),
            reason=body.get("reason"),
            action=body.get("action"),
            not_before=body.get("not_before"),
            audit_id=body.get("audit_id"),
            policy_version=body.get("policy_version"),
            location=location,
            raw=body,
        )
