"""How signals change what the tower knows about a customer (state transitions only)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.contracts.events import AgentEvent
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.state import ConsentMark, CustomerState


def apply_signal(
    state: CustomerState, event: AgentEvent, policy: Policy = DEFAULT_POLICY
) -> CustomerState:
    signal = event.signal
    if signal is None:
        return state
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


def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA zone this host knows (bad names are ignored, not fatal)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
