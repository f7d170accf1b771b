"""How signals change what the tower knows about a customer (state transitions only)."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.contracts.events import AgentEvent
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.rules.quiet_hours import is_timezone
from pipeline.core.state import ConsentMark, CustomerState, Handoff

#: Signal attributes that name a fact under another key (purchase order_id is the customer's
#: order number); every other attribute of profile_updated / purchase is known as itself.
FACT_ALIASES = {"order_id": "order_number"}


def apply_signal(
    state: CustomerState, event: AgentEvent, policy: Policy = DEFAULT_POLICY
) -> CustomerState:
    signal = event.signal
    if signal is None:
        return state
    state = _base_transition(state, event, policy)
    if policy.escalation.armed or state.handoff is not None:
        state = _escalation(state, event, policy)
    if policy.loop_prevention.templates and signal.type in ("profile_updated", "purchase"):
        state = _learn(state, signal.attributes, policy)
    return state


def _base_transition(state: CustomerState, event: AgentEvent, policy: Policy) -> CustomerState:
    signal = event.signal
    assert signal is not None
    attrs = signal.attributes
    kind = signal.type
    if kind == "consent_changed":
        channel = attrs.get("channel") or event.channel or "*"
        if channel == "all":
            channel = "*"
        purpose = attrs.get("purpose") or "all"
        granted = attrs.get("granted", "").lower() == "true"
        consents = dict(state.consents)
        consents[f"{channel}:{purpose}"] = ConsentMark(event.occurred_at, granted)
        return state.evolve(consents=consents)
    if kind == "case_opened":
        return state.evolve(open_cases=_open_case(state, event, policy))
    if kind == "case_resolved":
        case_id = attrs.get("case_id") or event.conversation_id
        if case_id is None:  # no id: the business system closed everything
            return state.evolve(open_cases={})
        return state.evolve(open_cases={k: v for k, v in state.open_cases.items() if k != case_id})
    if kind == "sentiment":
        score = _float(attrs.get("score"))
        if score is not None and score < policy.service_first.sentiment_threshold:
            return state.evolve(complaint_at=event.occurred_at)
        return state
    if kind == "profile_updated":
        tz = attrs.get("timezone")
        if tz and is_timezone(tz):
            return state.evolve(timezone=tz)
    return state


def _escalation(state: CustomerState, event: AgentEvent, policy: Policy) -> CustomerState:
    """Escalation bookkeeping: inbound contacts, the negative streak, the needs-human mark.

    case_resolved (any case) ends the handoff and starts the counts afresh. Once a customer
    needs a human the first reason is kept; later triggers do not replace it.
    """
    esc = policy.escalation
    signal = event.signal
    assert signal is not None
    kind = signal.type
    at = event.occurred_at
    if kind == "case_resolved":
        if state.handoff is None and not state.inbound and not state.negative_streak:
            return state
        return state.evolve(handoff=None, inbound=(), negative_streak=0)
    reason: str | None = None
    changes: dict[str, object] = {}
    if kind == "handoff_to_human" and esc.explicit_request:
        reason = "customer asked for a human (handoff_to_human)"
    elif (
        kind == "message_received"
        and esc.explicit_request
        and (signal.attributes.get("intent", "").lower() == "human")
    ):
        reason = "customer asked for a human (intent=human)"
    if kind in ("message_received", "case_opened") and esc.repeat_contacts > 0:
        horizon = at - esc.repeat_window_ms
        inbound = (*(t for t in state.inbound if horizon < t <= at), at)[-esc.repeat_contacts :]
        changes["inbound"] = inbound
        if reason is None and len(inbound) >= esc.repeat_contacts:
            hours = esc.repeat_window_ms / 3_600_000
            reason = f"repeat contact: {len(inbound)} contacts within {hours:g}h"
    if kind == "sentiment" and esc.negative_streak > 0:
        score = _float(signal.attributes.get("score"))
        if score is not None:
            streak = state.negative_streak + 1 if score < esc.sentiment_threshold else 0
            changes["negative_streak"] = streak
            if reason is None and streak >= esc.negative_streak:
                reason = (
                    f"negative sentiment: {streak} scores in a row below "
                    f"{esc.sentiment_threshold:g}"
                )
    if reason is not None and state.handoff is None:
        changes["handoff"] = Handoff(at, reason, None)
    return state.evolve(**changes) if changes else state


def _learn(state: CustomerState, attrs: Mapping[str, str], policy: Policy) -> CustomerState:
    """Remember facts a template asks for (only those: the rest is not worth the bytes)."""
    asked = policy.loop_prevention.asked
    learned = {
        key: value
        for name, value in attrs.items()
        if value and (key := FACT_ALIASES.get(name, name)) in asked
    }
    if not learned or all(state.known.get(k) == v for k, v in learned.items()):
        return state
    return state.evolve(known={**state.known, **learned})


def _open_case(state: CustomerState, event: AgentEvent, policy: Policy) -> dict[str, int]:
    """Add the case, dropping stale ones and then the oldest beyond the bound."""
    sf = policy.service_first
    case_id = event.signal.attributes.get("case_id") if event.signal else None
    case_id = case_id or event.conversation_id or event.event_id
    horizon = event.occurred_at - sf.case_max_age_ms
    cases = {k: at for k, at in state.open_cases.items() if at > horizon and k != case_id}
    cases[case_id] = event.occurred_at
    while len(cases) > sf.max_open_cases:
        del cases[next(iter(cases))]
    return cases


def _float(raw: str | None) -> float | None:
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None
