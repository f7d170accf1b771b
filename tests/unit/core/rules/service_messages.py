"""The care bot's chat messages and answers, and the question templates, that the service-side
rules (loop prevention, transforms, consistency ledger, escalation) are tested on."""

from __future__ import annotations

from dataclasses import replace

from pipeline.contracts.events import AgentEvent
from tests.factories import T0, proposal

TEMPLATES = {
    "ask-order": frozenset({"order_number"}),
    "ask-order-and-mail": frozenset({"order_number", "email"}),
    "ask-contact": frozenset({"email", "phone"}),
}


def msg(content: str, at: int = T0 + 1, **changes) -> AgentEvent:
    """A care bot's AI-written service chat message, with `changes` to any field."""
    base = {
        "agent": "care-bot",
        "department": "service",
        "channel": "chat",
        "category": "service",
        "content": content,
        "ai_generated": True,
    }
    conversation = changes.pop("conversation_id", None)
    return replace(proposal(at=at, **{**base, **changes}), conversation_id=conversation)


def answer(at: int = T0, **changes) -> AgentEvent:
    """A care bot's AI-written answer in the service chat, with `changes` to any field."""
    base = {
        "agent": "care-bot",
        "department": "service",
        "channel": "chat",
        "action": "answer",
        "category": "service",
        "content": "care-bot about your order",
        "ai_generated": True,
    }
    return proposal(at=at, **{**base, **changes})
