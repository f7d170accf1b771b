"""The events an agent sends, built and checked as a worker would read them, before they leave.

A refusal names the dead-letter reason and field exactly as a worker would, so an agent
learns of a bad event from the call, not from the dead-letter topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal, Required, TypedDict

import orjson

from pipeline.client.errors import InvalidProposal
from pipeline.contracts.codec import InvalidEvent, decode_event, encode_event
from pipeline.contracts.events import AgentEvent, Proposal, Signal, event_to_dict
from pipeline.settings import Settings

Format = Literal["json", "avro"]

#: the worker's default `TOWER_MAX_EVENT_BYTES`: a bigger event would be dead-lettered
MAX_EVENT_BYTES = Settings().max_event_bytes
#: the fields a proposal cannot do without (`propose`, `preflight`)
REQUIRED_FIELDS = ("agent", "department", "channel", "action", "category")


class ProposalFields(TypedDict, total=False):
    """The keyword arguments of `propose` and `preflight` (see `make_proposal`)."""

    agent: Required[str]
    department: Required[str]
    channel: Required[str]
    action: Required[str]
    category: Required[str]
    trigger: str | None
    priority: int
    content: str | None
    offer_id: str | None
    offer_value: float | None
    propensity: float | None
    asserts: Mapping[str, str] | None
    ai_generated: bool
    expires_at: int | None
    conversation_id: str | None
    occurred_at: int | None
    event_id: str | None


def check_fields(fields: Mapping[str, Any]) -> None:
    """InvalidProposal listing every required field missing and every unknown one, rather
    than Python's TypeError for the first."""
    missing = [name for name in REQUIRED_FIELDS if fields.get(name) is None]
    unknown = sorted(set(fields) - set(ProposalFields.__annotations__))
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown {', '.join(unknown)}")
    if problems:
        raise InvalidProposal(
            "missing_field" if missing else "unknown_field",
            f"a proposal needs {', '.join(REQUIRED_FIELDS)}: {'; '.join(problems)}",
            (missing or unknown)[0],
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    """Random, so a retried call with the same id is recognised as a duplicate and two
    calls never are."""
    return f"ev-{uuid.uuid4().hex}"


def make_proposal(
    customer_id: str,
    *,
    agent: str,
    department: str,
    channel: str,
    action: str,
    category: str,
    trigger: str | None = None,
    priority: int = 50,
    content: str | None = None,
    offer_id: str | None = None,
    offer_value: float | None = None,
    propensity: float | None = None,
    asserts: Mapping[str, str] | None = None,
    ai_generated: bool = False,
    expires_at: int | None = None,
    conversation_id: str | None = None,
    occurred_at: int | None = None,
    event_id: str | None = None,
) -> AgentEvent:
    """A proposal event, checked against the contract (InvalidProposal names the problem).
    `occurred_at` defaults to now (epoch ms), `event_id` to a new random id."""
    return validate(
        AgentEvent(
            event_id=new_event_id() if event_id is None else event_id,
            customer_id=customer_id,
            occurred_at=now_ms() if occurred_at is None else occurred_at,
            kind="proposal",
            agent=agent,
            department=department,
            channel=channel,
            conversation_id=conversation_id,
            trigger=trigger,
            proposal=Proposal(
                action=action,
                category=category,
                priority=priority,
                content=content,
                offer_id=offer_id,
                offer_value=offer_value,
                propensity=propensity,
                asserts={} if asserts is None else asserts,
                ai_generated=ai_generated,
                expires_at=expires_at,
            ),
        )
    )


def make_signal(
    customer_id: str,
    type_: str,
    *,
    agent: str = "crm",
    department: str = "system",
    attributes: Mapping[str, str] | None = None,
    channel: str | None = None,
    conversation_id: str | None = None,
    occurred_at: int | None = None,
    event_id: str | None = None,
) -> AgentEvent:
    """A signal event, checked like `make_proposal`. Some signals read `channel` (a
    consent change without a channel attribute) or `conversation_id` (a case id)."""
    return validate(
        AgentEvent(
            event_id=new_event_id() if event_id is None else event_id,
            customer_id=customer_id,
            occurred_at=now_ms() if occurred_at is None else occurred_at,
            kind="signal",
            agent=agent,
            department=department,
            channel=channel,
            conversation_id=conversation_id,
            signal=Signal(type=type_, attributes={} if attributes is None else attributes),
        )
    )


def validate(event: AgentEvent) -> AgentEvent:
    """The event as a worker would read it, or InvalidProposal with the worker's reason.

    It is written as plain JSON (not through the schema validator) and read back with the
    worker's own decoder, so the error names the field exactly as the dead letter would.
    """
    key = event.customer_id.encode() if isinstance(event.customer_id, str) else b""
    try:
        raw = orjson.dumps(event_to_dict(event))
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        raise InvalidProposal(
            "invalid_field", f"the event is not JSON-serialisable: {exc}"
        ) from None
    try:
        checked = decode_event(key, raw, max_bytes=len(raw))
    except InvalidEvent as exc:
        raise InvalidProposal(exc.reason, exc.detail, exc.field) from None
    if checked != event:  # JSON changed a value (orjson writes NaN as null): refuse, not alter
        name, given, read = _first_difference(event_to_dict(event), event_to_dict(checked))
        raise InvalidProposal(
            "invalid_field", f"{name}={given!r} would reach the tower as {read!r}", name
        )
    return checked


def _first_difference(
    given: Mapping[str, Any], read: Mapping[str, Any], prefix: str = ""
) -> tuple[str, Any, Any]:
    for name, value in given.items():
        other = read.get(name)
        if isinstance(value, Mapping) and isinstance(other, Mapping):
            if value != other:
                return _first_difference(value, other, f"{prefix}{name}.")
        elif value != other:
            return prefix + name, value, other
    return prefix.rstrip(".") or "event", given, read


def wire_value(event: AgentEvent, fmt: Format = "json") -> bytes:
    """The record value to produce: the checked event in `fmt`, round-tripped through the
    worker's decoder (size limit included) before anything leaves the process."""
    checked = validate(event)
    try:
        value = encode_event(checked, fmt)
        decode_event(checked.customer_id.encode(), value, MAX_EVENT_BYTES)
    except ValueError as exc:  # encoder's schema check; InvalidEvent is no ValueError
        raise InvalidProposal("invalid_field", str(exc)) from None
    except InvalidEvent as exc:
        raise InvalidProposal(exc.reason, exc.detail, exc.field) from None
    return value
