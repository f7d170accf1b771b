"""How signals change what the tower knows about a customer (state transitions only)."""

from __future__ import annotations

from pipeline.contracts.events import AgentEvent
from pipeline.core.state import ConsentMark, CustomerState


def apply_signal(state: CustomerState, event: AgentEvent) -> CustomerState:
    signal = event.signal
    if signal is None:
        return state
    if signal.type == "consent_changed":
        attrs = signal.attributes
        channel = attrs.get("channel") or event.channel or "*"
        if channel == "all":
            channel = "*"
        purpose = attrs.get("purpose") or "all"
        granted = attrs.get("granted", "").lower() == "true"
        consents = dict(state.consents)
        consents[f"{channel}:{purpose}"] = ConsentMark(event.occurred_at, granted)
        return state.evolve(consents=consents)
    return state
