"""One customer as a journey owner sees it: current state plus the audit timeline.

Pure functions from a `CustomerState`, the policy and decoded audit records to plain dicts
(the JSON of `/api/customers/{id}` and the data of its page), so the wording and the cap
counting are tested without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from pipeline.core.decision import EMITTING
from pipeline.core.policy import Policy
from pipeline.core.rules.frequency_caps import usage
from pipeline.core.state import CustomerState


def caps_used(state: CustomerState, policy: Policy, as_of: int) -> list[dict[str, Any]]:
    """Contacts counted by each cap in its window ending at `as_of`, per scope value.

    Counted exactly as the frequency-cap rule counts them; scope values without a counted
    contact are left out.
    """
    return [
        {
            "cap": cap.name,
            "scope": cap.scope,
            "value": value,
            "used": n,
            "limit": cap.limit,
            "window_s": cap.window_ms // 1000,
        }
        for cap, value, n in usage(state.contacts, policy.caps, as_of)
        if n
    ]


def _input(record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = orjson.loads(record.get("input") or "{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _what(ev: Mapping[str, Any]) -> str:
    """The event in a few words: signal type and attributes, or the proposed action."""
    s, p = ev.get("signal"), ev.get("proposal")
    if s:
        attrs = s.get("attributes") or {}
        return s.get("type", "signal") + "".join(f" {k}={v}" for k, v in attrs.items())
    if p:
        text = f"{p.get('category')} {p.get('action')}"
        if p.get("offer_id"):
            text += f" offer {p['offer_id']}"
        if p.get("content"):
            text += f": {p['content']}"
        return text
    return "-"


def timeline_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """One audit record: what happened (signal or proposal), the decision, the action."""
    ev = _input(record)
    outcome = record.get("outcome")
    action_id = record.get("action_id")
    return {
        "at": ev.get("occurred_at", record.get("decided_at")),
        "kind": record.get("kind"),
        "event_id": record.get("event_id"),
        "agent": record.get("agent"),
        "channel": record.get("channel"),
        "what": _what(ev),
        "outcome": outcome,
        "rule": record.get("rule"),
        "reason": record.get("reason"),
        "decision_id": record.get("decision_id"),
        "action_id": action_id if outcome in EMITTING else None,
        "merged_into": record.get("merged_into"),
        "policy_version": record.get("policy_version"),
    }


def customer_view(
    customer_id: str,
    state: CustomerState,
    policy: Policy,
    audit: Sequence[Mapping[str, Any]],
    **context: Any,
) -> dict[str, Any]:
    """The page's data; `audit` oldest first. `context` (partition, served_by...) is kept.

    Caps are counted at the customer's newest known event time, because the rules count in
    event time: that is what the next decision at that moment would see.
    """
    timeline = [timeline_entry(r) for r in audit if r.get("customer_id") == customer_id]
    times: Iterable[int] = [
        *(t["at"] for t in timeline if t["at"] is not None),
        *(c.at for c in state.contacts),
        *(m.at for m in state.consents.values()),
    ]
    as_of = max(times, default=None)
    offer = state.offer
    return {
        "customer_id": customer_id,
        "known": bool(timeline) or state.events > 0,
        "as_of": as_of,
        "events": state.events,
        "timezone": state.timezone,
        "consents": [
            {"scope": k, "granted": m.granted, "at": m.at} for k, m in state.consents.items()
        ],
        "caps_used": [] if as_of is None else caps_used(state, policy, as_of),
        "open_cases": [{"case_id": k, "opened_at": at} for k, at in state.open_cases.items()],
        "facts": [
            {"name": k, "value": f.value, "agent": f.agent, "at": f.at}
            for k, f in state.facts.items()
        ],
        "offer": None if offer is None else offer._asdict(),
        "holds": [
            {"hold_id": k, "key": h.key, "deadline": h.deadline, "proposals": len(h.items)}
            for k, h in state.holds.items()
        ],
        "timeline": timeline,
        "policy_version": policy.policy_version,
        **context,
    }
