"""Audit and dead-letter records for the console's tests, in the topics' dict shape."""

from __future__ import annotations

from typing import Any

import orjson

NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'


def audit(
    i: int,
    customer: str = "ana",
    *,
    kind: str = "proposal",
    agent: str = "promo-bot",
    outcome: str = "approved",
    rule: str | None = None,
    reason: str = "ok",
    at: int = NOW,
    arms: list[dict[str, str]] | None = None,
    signal: dict[str, Any] | None = None,
    content: str = "20% off",
    merged_into: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"e{i}", "customer_id": customer, "occurred_at": at, "kind": kind,
        "agent": agent, "department": "marketing",
    }  # fmt: skip
    if kind == "signal":
        event["signal"] = signal or {"type": "purchase", "attributes": {"amount": "10"}}
    else:
        event["channel"] = "email"
        event["proposal"] = {
            "category": "marketing",
            "action": "message",
            "content": content,
            "priority": 50,
        }
    return {
        "decision_id": f"d{i}", "event_id": f"e{i}", "customer_id": customer, "kind": kind,
        "agent": agent, "department": "marketing", "channel": "email" if kind != "signal" else None,
        "trigger": None, "outcome": outcome, "rule": rule, "reason": reason, "trace": [],
        "policy_version": "1.0.0+abc", "action_id": f"a{i}" if outcome == "approved" else None,
        "merged_into": merged_into, "decided_at": at, "source_topic": "agent-events",
        "source_partition": 0, "source_offset": i, "input": orjson.dumps(event).decode(),
        "processed_at": at, "experiments": arms or [],
    }  # fmt: skip


def dead_letter(i: int, reason: str = "bad_json", detail: str = "not JSON") -> dict[str, Any]:
    return {
        "reason": reason, "detail": detail, "raw_key": b"k",
        "raw_value": b"\x00{bad" + HOSTILE.encode(),
        "source_topic": "agent-events", "source_partition": 0, "source_offset": i,
        "source_timestamp": NOW, "dead_lettered_at": NOW + i,
    }  # fmt: skip
