"""Experience metrics computed in-stream: `observe(journey, event, decision) -> (journey, obs)`.

The article's point is that AI metrics are experience metrics: containment paired with CSAT,
repeat contacts, sentiment shift, journey health, cost and conversion, churn risk. They need
per-customer memory (when was the last resolution, the last AI action, which conversations
are open), so they are computed next to the decisions, from the same ordered stream, in
event time. Pure: the shell applies the observations to Prometheus and stores the journey.

Definitions (each rule has a table-driven test in tests/unit/core/test_experience.py):

- conversation: keyed by the signal's `case_id`, else the event's `conversation_id`; opened
  by its first touch (case_opened, message_received, handoff or approved action). A signal
  without either id: case_resolved and handoff_to_human apply to every open conversation
  (like `signals.py`), message_received/case_opened open the customer's unnamed one ("").
- containment: a resolved conversation with an approved AI answer (`ai_generated`, action
  `answer`) counts as contained unless it was handed to a human; conversations without an
  AI answer are not in the containment ratio (they still count as resolutions). CSAT that
  names such a conversation (or, without an id, the latest one) within `csat_window_ms` of
  its resolution is observed with the same `contained` label.
- repeat contact: message_received or case_opened within `repeat_window_ms` after a
  resolution; counted once per resolution.
- sentiment shift: first score after an approved AI action minus the last score before it.
- channel switch: a touchpoint (approved action, message_received) of an open conversation
  on another channel than the previous touchpoint of that conversation.
- time to resolution: conversation's first touch to case_resolved, event time.
- cost to serve: `costs` per (action, channel), wildcard "*"; a handoff costs a human.
- assisted purchase: within `conversion_window_ms` after an approved AI action.
- churn risk: sentiment < -0.5 or csat <= 2 within `churn_window_ms` after an AI action.
- governance: conflicts prevented (suppressed or merged, by rule), contradictions blocked
  (consistency_ledger), escalations.
- transforms applied: disclosures, PII redactions and the other content transforms, counted
  by transform from the decision's trace.

Windows are half-open: `start <= t < start + window`. Replays (duplicate decisions) observe
nothing, so a replayed event is never counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec

from pipeline.contracts.events import AgentEvent
from pipeline.core.decision import (
    APPROVED,
    DEFERRED,
    DUPLICATE,
    ESCALATED,
    MERGED,
    SUPPRESSED,
    Decision,
)
from pipeline.core.policy import DAY_MS
from pipeline.core.state import (
    EMPTY_JOURNEY,
    ClosedConversation,
    Conversation,
    Journey,
)

# Metric names (the shell registers Prometheus objects under exactly these names).
CONVERSATIONS_RESOLVED: Final = "tower_conversations_resolved"  # counter {contained}
CSAT_SCORE: Final = "tower_csat_score"  # histogram {contained}
RESOLUTIONS: Final = "tower_resolutions"  # counter
REPEAT_CONTACTS: Final = "tower_repeat_contacts"  # counter
SENTIMENT_SHIFT: Final = "tower_sentiment_shift"  # histogram
JOURNEY_STEP: Final = "tower_journey_step"  # counter {journey, step}
CHANNEL_SWITCHES: Final = "tower_channel_switches"  # counter {from_channel, to_channel}
TIME_TO_RESOLUTION: Final = "tower_time_to_resolution_seconds"  # histogram
COST_TO_SERVE: Final = "tower_cost_to_serve"  # counter {channel, action}
PURCHASES: Final = "tower_purchases"  # counter {assisted}
PURCHASE_AMOUNT: Final = "tower_purchase_amount"  # counter {assisted}
CHURN_RISK: Final = "tower_churn_risk_signals"  # counter {signal}
CONFLICTS_PREVENTED: Final = "tower_conflicts_prevented"  # counter {rule}
CONTRADICTIONS_BLOCKED: Final = "tower_contradictions_blocked"  # counter
ESCALATIONS: Final = "tower_escalations"  # counter {rule}
HANDOFFS: Final = "tower_handoffs"  # counter {channel}
TRANSFORMS: Final = "tower_transforms_applied"  # counter {transform}: disclosures, redactions

HANDOFF_ACTION: Final = "human_handoff"  # the cost-table action of a handoff_to_human
CONTRADICTION_RULE: Final = "consistency_ledger"
#: Free-text labels (journey, step) are cut to this length to keep series names sane.
MAX_LABEL = 64

#: Nominal cost per contact in currency units, (action, channel) with "*" as wildcard;
#: the most specific entry wins: (action, channel), (action, *), (*, channel).
#: Placeholders: deployments should supply their own numbers.
DEFAULT_COSTS: Final[Mapping[tuple[str, str], float]] = {
    ("*", "email"): 0.002,
    ("*", "push"): 0.001,
    ("*", "in_app"): 0.001,
    ("*", "web"): 0.001,
    ("*", "sms"): 0.04,
    ("*", "chat"): 0.05,
    ("*", "voice"): 0.50,
    ("callback", "*"): 4.00,
    ("route_case", "*"): 0.0,
    (HANDOFF_ACTION, "*"): 6.00,
}


@dataclass(frozen=True, slots=True)
class ExperienceSettings:
    """Windows and bounds of the experience metrics; defaults match the dashboards."""

    repeat_window_ms: int = 7 * DAY_MS
    conversion_window_ms: int = 7 * DAY_MS
    churn_window_ms: int = 7 * DAY_MS
    csat_window_ms: int = 7 * DAY_MS
    conversation_max_age_ms: int = 30 * DAY_MS  # an unresolved conversation is dropped then
    max_conversations: int = 20
    max_closed: int = 10
    churn_sentiment: float = -0.5
    churn_csat: float = 2.0
    costs: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(DEFAULT_COSTS))


DEFAULT_EXPERIENCE = ExperienceSettings()


class Observation(NamedTuple):
    """One metric update: counters add `value`, histograms observe it."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def obs(name: str, value: float = 1.0, **labels: str) -> Observation:
    return Observation(name, tuple(labels.items()), value)


def observe(
    journey: Journey,
    event: AgentEvent,
    decision: Decision,
    settings: ExperienceSettings = DEFAULT_EXPERIENCE,
) -> tuple[Journey, list[Observation]]:
    """The journey after `event` and what it tells the metrics. Same journey if unchanged."""
    if decision.outcome == DUPLICATE:
        return journey, []
    out = _governance(decision)
    if event.proposal is not None:
        return _after_proposal(journey, event, decision, settings, out)
    if event.signal is not None:
        return _after_signal(journey, event, settings, out)
    return journey, out


def _governance(decision: Decision) -> list[Observation]:
    rule = decision.rule or "-"
    if decision.outcome in (SUPPRESSED, MERGED):
        out = [obs(CONFLICTS_PREVENTED, rule=rule)]
        if decision.outcome == SUPPRESSED and rule == CONTRADICTION_RULE:
            out.append(obs(CONTRADICTIONS_BLOCKED))
        return out
    if decision.outcome == ESCALATED:
        out = [obs(ESCALATIONS, rule=rule)]
        if rule == CONTRADICTION_RULE:
            out.append(obs(CONTRADICTIONS_BLOCKED))
        return out
    return [obs(TRANSFORMS, transform=s.rule) for s in decision.trace if s.verdict == "transform"]


def _after_proposal(
    j: Journey, event: AgentEvent, decision: Decision, s: ExperienceSettings, out: list[Observation]
) -> tuple[Journey, list[Observation]]:
    p = event.proposal
    assert p is not None
    if decision.outcome not in (APPROVED, DEFERRED, ESCALATED) or decision.action is None:
        return j, out
    channel = event.channel or ""
    action = decision.action.action  # an escalated answer costs what its route_case costs
    cost = cost_of(action, channel, s.costs)
    if cost:
        out.append(obs(COST_TO_SERVE, cost, channel=channel or "-", action=action))
    now = event.occurred_at
    ai = p.ai_generated and decision.outcome in (APPROVED, DEFERRED)
    conversations = j.conversations
    key = event.conversation_id
    if key is not None:
        conversations = _prune(conversations, now, s)
        conv = conversations.get(key) or Conversation(now, "", False, False)
        conv = _touch(conv, channel, out)
        if ai and p.action == "answer":
            conv = conv._replace(ai=True)
        conversations = _put(conversations, key, conv, s)
    if not ai:
        return _evolve(j, conversations=conversations), out
    return _evolve(j, conversations=conversations, ai_at=now, ai_since_sentiment=True), out


def _after_signal(
    j: Journey, event: AgentEvent, s: ExperienceSettings, out: list[Observation]
) -> tuple[Journey, list[Observation]]:
    sig = event.signal
    assert sig is not None
    kind, attrs, now = sig.type, sig.attributes, event.occurred_at
    key = attrs.get("case_id") or event.conversation_id
    if kind in ("message_received", "case_opened"):
        # the first contact after a resolution closes its window, a repeat or not
        if j.resolved_at is not None and _within(j.resolved_at, now, s.repeat_window_ms):
            out.append(obs(REPEAT_CONTACTS))
        conversations = _prune(j.conversations, now, s)
        k = key or ""
        conv = conversations.get(k) or Conversation(now, "", False, False)
        if kind == "message_received":
            conv = _touch(conv, event.channel or "", out)
        return _evolve(j, conversations=_put(conversations, k, conv, s), resolved_at=None), out
    if kind == "handoff_to_human":
        channel = event.channel or ""
        out.append(obs(HANDOFFS, channel=channel or "-"))
        cost = cost_of(HANDOFF_ACTION, channel, s.costs)
        if cost:
            out.append(obs(COST_TO_SERVE, cost, channel=channel or "-", action=HANDOFF_ACTION))
        conversations = _prune(j.conversations, now, s)
        keys = list(conversations) if key is None else [key]
        for k in keys:
            conv = conversations.get(k) or Conversation(now, channel, False, False)
            conversations = _put(conversations, k, conv._replace(handoff=True), s)
        return _evolve(j, conversations=conversations), out
    if kind == "case_resolved":
        return _resolve(j, key, now, s, out), out
    if kind == "csat":
        return _csat(j, key, finite_float(attrs.get("score")), now, s, out), out
    if kind == "sentiment":
        score = finite_float(attrs.get("score"))
        if score is None:
            return j, out
        if j.ai_since_sentiment and j.sentiment is not None:
            out.append(obs(SENTIMENT_SHIFT, score - j.sentiment))
        if score < s.churn_sentiment and _after_ai(j, now, s.churn_window_ms):
            out.append(obs(CHURN_RISK, signal="sentiment"))
        return _evolve(j, sentiment=score, ai_since_sentiment=False), out
    if kind == "purchase":
        assisted = _flag(_after_ai(j, now, s.conversion_window_ms))
        out.append(obs(PURCHASES, assisted=assisted))
        amount = finite_float(attrs.get("amount"))
        if amount is not None and amount > 0:
            out.append(obs(PURCHASE_AMOUNT, amount, assisted=assisted))
        return j, out
    if kind == "journey_step":
        journey = (attrs.get("journey") or "-")[:MAX_LABEL]
        step = (attrs.get("step") or "-")[:MAX_LABEL]
        out.append(obs(JOURNEY_STEP, journey=journey, step=step))
    return j, out


def _resolve(
    j: Journey, key: str | None, now: int, s: ExperienceSettings, out: list[Observation]
) -> Journey:
    out.append(obs(RESOLUTIONS))
    conversations = dict(j.conversations)
    keys = list(conversations) if key is None else [key]
    closed = {k: c for k, c in j.closed.items() if _within(c.at, now, s.csat_window_ms)}
    for k in keys:
        conv = conversations.pop(k, None)
        if conv is None:
            continue
        out.append(obs(TIME_TO_RESOLUTION, max(0, now - conv.started) / 1000))
        if conv.ai:
            contained = not conv.handoff
            out.append(obs(CONVERSATIONS_RESOLVED, contained=_flag(contained)))
            closed.pop(k, None)
            closed[k] = ClosedConversation(now, contained)
    while len(closed) > s.max_closed:
        del closed[next(iter(closed))]
    return _evolve(j, conversations=conversations, closed=closed, resolved_at=now)


def _csat(
    j: Journey,
    key: str | None,
    score: float | None,
    now: int,
    s: ExperienceSettings,
    out: list[Observation],
) -> Journey:
    if score is None:
        return j
    if score <= s.churn_csat and _after_ai(j, now, s.churn_window_ms):
        out.append(obs(CHURN_RISK, signal="csat"))
    if key is None:
        key = next(reversed(j.closed), None)
    conv = j.closed.get(key) if key is not None else None
    if conv is None or not _within(conv.at, now, s.csat_window_ms):
        return j
    out.append(obs(CSAT_SCORE, score, contained=_flag(conv.contained)))
    return _evolve(j, closed={k: c for k, c in j.closed.items() if k != key})


def _touch(conv: Conversation, channel: str, out: list[Observation]) -> Conversation:
    """A touchpoint on `channel`: a switch if the conversation was last on another one."""
    if not channel:
        return conv
    if conv.channel and conv.channel != channel:
        out.append(obs(CHANNEL_SWITCHES, from_channel=conv.channel, to_channel=channel))
    return conv._replace(channel=channel)


def _prune(
    conversations: dict[str, Conversation], now: int, s: ExperienceSettings
) -> dict[str, Conversation]:
    horizon = now - s.conversation_max_age_ms
    if all(c.started > horizon for c in conversations.values()):
        return conversations
    return {k: c for k, c in conversations.items() if c.started > horizon}


def _put(
    conversations: dict[str, Conversation], key: str, conv: Conversation, s: ExperienceSettings
) -> dict[str, Conversation]:
    """Copy with `key` set (kept in first-touch order), the oldest dropped beyond the bound."""
    out = dict(conversations)
    out[key] = conv
    while len(out) > s.max_conversations:
        del out[next(iter(out))]
    return out


def _evolve(j: Journey, **changes: Any) -> Journey:
    """A new journey with `changes`; the same object if nothing changed (no state rewrite)."""
    if all(getattr(j, k) == v for k, v in changes.items()):
        return j
    new = msgspec.structs.replace(j, **changes)
    return EMPTY_JOURNEY if new == EMPTY_JOURNEY else new


def cost_of(action: str, channel: str, costs: Mapping[tuple[str, str], float]) -> float:
    for k in ((action, channel), (action, "*"), ("*", channel)):
        if k in costs:
            return costs[k]
    return 0.0


def _after_ai(j: Journey, now: int, window: int) -> bool:
    return j.ai_at is not None and _within(j.ai_at, now, window)


def _within(start: int, t: int, window: int) -> bool:
    return start <= t < start + window


def _flag(b: bool) -> str:
    return "true" if b else "false"


def finite_float(raw: str | None) -> float | None:
    try:
        value = None if raw is None else float(raw)
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None
