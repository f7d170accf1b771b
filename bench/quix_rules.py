"""The rule subset of the Quix Streams contender, as plain functions (no quixstreams here).

What a Quix Streams user would write to get Tower's core rules for the simulator's traffic
(`pipeline/ops/simulator.py`), and no more:

  replay           an event id already seen for the customer is a `duplicate` (bounded
                   memory of the last 200 ids, as Tower's `replay_memory`)
  consent          per channel and purpose from `consent_changed` signals: the newest mark
                   among `channel:purpose`, `channel:all`, `*:purpose`, `*:all` wins;
                   marketing and sales need an opt-in, service and transactional do not
  duplicate merge  one action per trigger: a proposal for a trigger approved less than
                   10 minutes earlier (event time) is `merged`
  offer            one offer per customer per day
  frequency cap    3 contacts per channel per rolling day; transactional is exempt

with one audit record per input and one action per approval. Semantics follow Tower's
rules in `pipeline/core/` (`rules/consent.py`, `rules/duplicate_merge.py`,
`rules/offer_arbitration.py`, `rules/frequency_caps.py`, `signals.py`, `arbitration.py`)
in the same order, so the outcome counts match Tower on `bench/policy.subset.yaml`: the
check runs first on replays, then merge, consent, offer, cap; `now` is the event's
`occurred_at`. `bench/quix_app.py` wires `decide` into a Quix `StreamingDataFrame`.

The customer's state is one JSON-able dict under one state key (what Quix's JSON state
serialisation stores in RocksDB and its changelog):

  seen      {event_id: outcome}, insertion order = age
  consents  {"channel:purpose": [at, granted]}
  triggers  {trigger: [at, action_id]}
  contacts  [[at, channel, category]], the last day's approvals
  offer     at of the active offer, or None
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.contracts.events import AgentEvent

DAY_MS = 86_400_000
REPLAY_MEMORY = 200
MERGE_WINDOW_MS = 10 * 60_000
CAP_LIMIT = 3
CAP_WINDOW_MS = DAY_MS
CAP_EXEMPT = frozenset({"transactional"})
OFFER_WINDOW_MS = DAY_MS
OPT_IN_REQUIRED = frozenset({"marketing", "sales"})
#: approved actions of these kinds move work, they are not customer contacts
NON_CONTACT_ACTIONS = frozenset({"route_case"})
#: the one state key per customer
KEY = "customer"

#: outcomes, named as Tower's (`pipeline/core/decision.py`) so counts compare
APPROVED, SUPPRESSED, MERGED, RECORDED, DUPLICATE = (
    "approved",
    "suppressed",
    "merged",
    "recorded",
    "duplicate",
)


class State(Protocol):
    """What `decide` needs of Quix's `State`: `get` and `set` of JSON-able values."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class MemoryState:
    """A dict standing in for Quix's `State` (tests, and runs without a broker)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def new_customer() -> dict[str, Any]:
    return {"seen": {}, "consents": {}, "triggers": {}, "contacts": [], "offer": None}


def decide(state: State, event: AgentEvent) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Decide one event against the customer's state; return (audit record, action or None)
    and store the customer's new state."""
    c = state.get(KEY) or new_customer()
    now = event.occurred_at
    seen = c["seen"]
    earlier = seen.get(event.event_id)
    if earlier is not None:  # nothing changes, so nothing is written
        return _audit(event, DUPLICATE, "replay", f"already decided as {earlier}", now), None
    action = None
    if event.proposal is None:
        signal = event.signal
        if signal is not None and signal.type == "consent_changed":
            _consent_changed(c, event)
        outcome, rule, reason = RECORDED, None, f"{signal.type if signal else 'signal'} recorded"
    else:
        outcome, rule, reason = _proposal(c, event, now)
        if outcome == APPROVED:
            action = _approve(c, event, now)
    seen[event.event_id] = outcome
    while len(seen) > REPLAY_MEMORY:
        del seen[next(iter(seen))]
    state.set(KEY, c)
    audit = _audit(event, outcome, rule, reason, now)
    if action is not None:
        audit["action_id"] = action["action_id"]
    return audit, action


def _consent_changed(c: dict[str, Any], event: AgentEvent) -> None:
    assert event.signal is not None
    attrs = event.signal.attributes
    channel = attrs.get("channel") or event.channel or "*"
    if channel == "all":
        channel = "*"
    purpose = attrs.get("purpose") or "all"
    granted = attrs.get("granted", "").lower() == "true"
    c["consents"][f"{channel}:{purpose}"] = [event.occurred_at, granted]


def _proposal(c: dict[str, Any], event: AgentEvent, now: int) -> tuple[str, str | None, str]:
    """(outcome, rule, reason) of the rule chain: merge, consent, offer, cap."""
    p = event.proposal
    assert p is not None
    trigger = event.trigger
    if trigger is not None:
        memo = c["triggers"].get(trigger)
        if memo is not None and now - memo[0] < MERGE_WINDOW_MS:
            return MERGED, "duplicate_merge", f"trigger {trigger} already answered by {memo[1]}"
    channel = event.channel or "*"
    mark = _latest_mark(c["consents"], channel, p.category)
    if mark is None:
        if p.category in OPT_IN_REQUIRED:
            return SUPPRESSED, "consent", f"no opt-in for {p.category} on {channel}"
    elif not mark[1]:
        return SUPPRESSED, "consent", f"consent for {p.category} on {channel} withdrawn"
    if is_offer(event) and c["offer"] is not None and now - c["offer"] < OFFER_WINDOW_MS:
        return SUPPRESSED, "offer_arbitration", f"an offer was made at {c['offer']}"
    if p.category not in CAP_EXEMPT:
        since = now - CAP_WINDOW_MS
        on = event.channel or ""
        used = sum(
            1
            for at, ch, category in c["contacts"]
            if since < at <= now and ch == on and category not in CAP_EXEMPT
        )
        if used >= CAP_LIMIT:
            return SUPPRESSED, "frequency_cap", f"{used}/{CAP_LIMIT} contacts on {on} today"
    return APPROVED, None, "every rule passed"


def _latest_mark(consents: dict[str, list[Any]], channel: str, purpose: str) -> list[Any] | None:
    """The newest of the four marks that apply (a tie goes to the more general one, as in
    Tower's `latest_mark`)."""
    best = None
    for key in (f"{channel}:{purpose}", f"{channel}:all", f"*:{purpose}", "*:all"):
        mark = consents.get(key)
        if mark is not None and (best is None or mark[0] >= best[0]):
            best = mark
    return best


def is_offer(event: AgentEvent) -> bool:
    p = event.proposal
    return p is not None and (p.action == "offer" or p.offer_id is not None)


def _approve(c: dict[str, Any], event: AgentEvent, now: int) -> dict[str, Any]:
    """The action, and what it adds to the state: contact, trigger memo, offer."""
    p = event.proposal
    assert p is not None
    action_id = f"{event.customer_id}/{event.event_id}"
    channel = event.channel or ""
    if p.action not in NON_CONTACT_ACTIONS:
        horizon = now - CAP_WINDOW_MS
        c["contacts"] = [x for x in c["contacts"] if x[0] > horizon]
        c["contacts"].append([now, channel, p.category])
    if event.trigger is not None:
        horizon = now - MERGE_WINDOW_MS
        c["triggers"] = {k: m for k, m in c["triggers"].items() if m[0] > horizon}
        c["triggers"][event.trigger] = [now, action_id]
    if is_offer(event):
        c["offer"] = now
    return {
        "action_id": action_id,
        "customer_id": event.customer_id,
        "channel": event.channel,
        "action": p.action,
        "category": p.category,
        "content": p.content,
        "offer_id": p.offer_id,
        "offer_value": p.offer_value,
        "conversation_id": event.conversation_id,
        "source_event_id": event.event_id,
        "agent": event.agent,
        "decided_at": now,
    }


def _audit(
    event: AgentEvent, outcome: str, rule: str | None, reason: str, now: int
) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "kind": event.kind,
        "agent": event.agent,
        "channel": event.channel,
        "trigger": event.trigger,
        "outcome": outcome,
        "rule": rule,
        "reason": reason,
        "decided_at": now,
        "action_id": None,
    }
