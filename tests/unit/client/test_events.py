"""Building and checking an agent's events without a broker: a bad event is refused with
the dead-letter reason a worker would give, before anything is produced."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline.client import (
    MAX_EVENT_BYTES,
    InvalidProposal,
    TowerError,
    make_proposal,
    make_signal,
    validate,
    wire_value,
)
from pipeline.contracts.codec import decode_event, encode_event
from pipeline.contracts.events import AgentEvent, Proposal

T0 = 1_767_225_600_000
DRAFT: dict[str, Any] = {
    "agent": "winback-bot",
    "department": "marketing",
    "channel": "email",
    "action": "message",
    "category": "marketing",
}


# --- building and checking events ------------------------------------------------------


def test_a_proposal_gets_an_id_a_time_and_the_defaults() -> None:
    before = int(time.time() * 1000)
    event = make_proposal("cust-42", **DRAFT)
    assert event.kind == "proposal" and event.customer_id == "cust-42"
    assert event.event_id.startswith("ev-") and len(event.event_id) > 20
    assert before <= event.occurred_at <= int(time.time() * 1000) + 1
    assert event.proposal == Proposal(action="message", category="marketing", priority=50)
    assert make_proposal("cust-42", **DRAFT).event_id != event.event_id


def test_given_fields_are_kept() -> None:
    event = make_proposal(
        "cust-42",
        **DRAFT,
        trigger="cart_abandoned:9",
        priority=70,
        content="Hi",
        offer_id="o-1",
        offer_value=10,
        propensity=0.4,
        asserts={"delivery_date": "2026-01-03"},
        ai_generated=True,
        expires_at=T0 + 1,
        conversation_id="conv-1",
        occurred_at=T0,
        event_id="e-1",
    )
    assert (event.event_id, event.occurred_at, event.trigger) == ("e-1", T0, "cart_abandoned:9")
    assert event.conversation_id == "conv-1"
    p = event.proposal
    assert p is not None
    assert p.offer_value == 10.0 and type(p.offer_value) is float  # as the worker reads it
    assert dict(p.asserts) == {"delivery_date": "2026-01-03"} and p.ai_generated


def test_a_signal_defaults_to_the_crm() -> None:
    event = make_signal("cust-42", "consent_changed", attributes={"granted": "true"})
    assert (event.kind, event.agent, event.department) == ("signal", "crm", "system")
    assert event.signal is not None and event.signal.type == "consent_changed"
    assert dict(event.signal.attributes) == {"granted": "true"}


@pytest.mark.parametrize(
    ("changes", "reason", "field_name"),
    [
        ({"channel": "fax"}, "invalid_field", "channel"),
        ({"action": "shout"}, "invalid_field", "proposal.action"),
        ({"category": "gossip"}, "invalid_field", "proposal.category"),
        ({"agent": ""}, "invalid_field", "agent"),
        ({"priority": 101}, "invalid_field", "proposal.priority"),
        ({"priority": "high"}, "invalid_field", "proposal.priority"),
        ({"propensity": 1.5}, "invalid_field", "proposal.propensity"),
        ({"offer_value": float("nan")}, "invalid_field", "proposal.offer_value"),  # JSON null
        ({"propensity": float("inf")}, "invalid_field", "proposal.propensity"),
        ({"asserts": {"order_number": 42}}, "invalid_field", "proposal.asserts.order_number"),
        ({"occurred_at": -1}, "invalid_field", "occurred_at"),
        ({"expires_at": 1.5}, "invalid_field", "proposal.expires_at"),
        ({"event_id": ""}, "invalid_field", "event_id"),
    ],
)
def test_a_bad_proposal_is_refused_with_the_dead_letter_reason(
    changes: dict[str, Any], reason: str, field_name: str
) -> None:
    with pytest.raises(InvalidProposal) as caught:
        make_proposal("cust-42", **{**DRAFT, **changes})
    assert (caught.value.reason, caught.value.field) == (reason, field_name)
    assert field_name in caught.value.detail
    assert isinstance(caught.value, TowerError)


def test_an_empty_customer_and_an_unserialisable_value_are_refused() -> None:
    with pytest.raises(InvalidProposal) as caught:
        make_proposal("", **DRAFT)
    assert (caught.value.reason, caught.value.field) == ("invalid_field", "customer_id")
    with pytest.raises(InvalidProposal) as caught:
        make_proposal("cust-42", **DRAFT, content=object())  # type: ignore[arg-type]
    assert caught.value.reason == "invalid_field"
    assert "JSON" in caught.value.detail


def test_a_bad_signal_is_refused() -> None:
    with pytest.raises(InvalidProposal) as caught:
        make_signal("cust-42", "birthday")
    assert (caught.value.reason, caught.value.field) == ("invalid_field", "signal.type")


def test_a_hand_made_event_is_checked_too() -> None:
    event = AgentEvent("e-1", "cust-42", T0, "proposal", "bot", "marketing", channel=None)
    with pytest.raises(InvalidProposal) as caught:
        validate(event)
    assert caught.value.reason == "missing_field"  # proposal record and channel


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_the_wire_value_is_what_a_worker_decodes(fmt: Any) -> None:
    event = make_proposal("cust-42", **DRAFT, content="Hi", occurred_at=T0, event_id="e-1")
    value = wire_value(event, fmt)
    assert value == encode_event(event, fmt)
    assert decode_event(b"cust-42", value) == event


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_an_oversize_event_is_refused(fmt: Any) -> None:
    event = make_proposal("cust-42", **DRAFT, content="x" * MAX_EVENT_BYTES)
    with pytest.raises(InvalidProposal) as caught:
        wire_value(event, fmt)
    assert caught.value.reason == "oversize"
