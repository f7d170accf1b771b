"""The input contract as Python values: what agents and business systems produce.

Field names mirror `schemas/agent_event.avsc` exactly, since agents code against them.
Instances are immutable so the decision core can hold and compare them safely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import msgspec

Kind = Literal["proposal", "signal"]

CHANNELS: frozenset[str] = frozenset({"email", "sms", "push", "chat", "voice", "web", "in_app"})
ACTIONS: frozenset[str] = frozenset({"message", "offer", "answer", "route_case", "callback"})
CATEGORIES: frozenset[str] = frozenset({"marketing", "sales", "service", "transactional"})
SIGNAL_TYPES: frozenset[str] = frozenset(
    {
        "case_opened",
        "case_resolved",
        "consent_changed",
        "purchase",
        "message_received",
        "sentiment",
        "csat",
        "handoff_to_human",
        "journey_step",
        "profile_updated",
    }
)
CONSENT_PURPOSES: frozenset[str] = frozenset(
    {"marketing", "sales", "service", "transactional", "all"}
)


@dataclass(frozen=True, slots=True)
class Proposal:
    """An action an agent would like to take towards the customer."""

    action: str
    category: str
    priority: int
    content: str | None = None
    offer_id: str | None = None
    offer_value: float | None = None
    propensity: float | None = None
    asserts: Mapping[str, str] = field(default_factory=dict)
    ai_generated: bool = False
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """Something that happened to or with the customer."""

    type: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One record of `agent-events`: a proposal or a signal about one customer."""

    event_id: str
    customer_id: str
    occurred_at: int
    kind: Kind
    agent: str
    department: str
    channel: str | None = None
    conversation_id: str | None = None
    trigger: str | None = None
    proposal: Proposal | None = None
    signal: Signal | None = None


class Source(msgspec.Struct, frozen=True):
    """Where a record came from, carried into audit and dead-letter records."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


_T = TypeVar("_T")


def trusted_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen slotted dataclass `cls` with its fields as parameters,
    in order, that fills the slots directly: the dataclass' `__init__` sets each field
    through the frozen `object.__setattr__`, twice the cost. For values the codec has
    validated; it applies no defaults."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]  # a dataclass
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    env.update({f"_set_{n}": vars(cls)[n].__set__ for n in names})
    body = "".join(f"    _set_{n}(o, {n})\n" for n in names)
    exec(f"def build({', '.join(names)}):\n    o = _new(_cls)\n{body}    return o\n", env)
    build: Callable[..., _T] = env["build"]
    return build


def event_to_dict(event: AgentEvent) -> dict[str, Any]:
    """Plain dict in schema shape (for JSON, Avro encoding and the audit trail)."""
    p = event.proposal
    s = event.signal
    return {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": event.occurred_at,
        "kind": event.kind,
        "agent": event.agent,
        "department": event.department,
        "channel": event.channel,
        "conversation_id": event.conversation_id,
        "trigger": event.trigger,
        "proposal": None
        if p is None
        else {
            "action": p.action,
            "category": p.category,
            "content": p.content,
            "offer_id": p.offer_id,
            "offer_value": p.offer_value,
            "priority": p.priority,
            "propensity": p.propensity,
            "asserts": dict(p.asserts),
            "ai_generated": p.ai_generated,
            "expires_at": p.expires_at,
        },
        "signal": None if s is None else {"type": s.type, "attributes": dict(s.attributes)},
    }
