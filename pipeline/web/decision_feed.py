"""The recent decisions of this worker, for the live page: bounded and numbered.

The processor calls the feed once per decision, so recording is one counter step and one
append of references it already holds; the dicts the page shows are built only when a page
asks. Numbers let a poller ask for "what is new after N" without missing or repeating rows.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import Counter

from pipeline.contracts.events import AgentEvent
from pipeline.core.decision import Decision

FEED_SIZE = 500


def feed_row(seq: int, decision: Decision, event: AgentEvent, now_ms: int) -> dict[str, Any]:
    """One decision as the live page shows it."""
    return {
        "seq": seq,
        "time": now_ms,
        "decided_at": decision.decided_at,
        "customer": event.customer_id,
        "event": event.event_id,
        "kind": event.kind,
        "agent": event.agent,
        "channel": event.channel,
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "action_id": decision.action_id,
    }


class DecisionFeed:
    """The last `maxlen` decisions, each numbered from 1 in the order they were made."""

    def __init__(self, maxlen: int = FEED_SIZE) -> None:
        self._items: deque[tuple[int, Decision, AgentEvent, int]] = deque(maxlen=maxlen)
        self.last = 0

    def __call__(self, decision: Decision, event: AgentEvent, now_ms: int) -> None:
        self.last += 1
        self._items.append((self.last, decision, event, now_ms))

    def after(self, seq: int) -> list[dict[str, Any]]:
        """Rows numbered above `seq`, oldest first; all rows if `seq` is from a past run."""
        if seq > self.last:
            seq = 0
        return [feed_row(*item) for item in self._items if item[0] > seq]


def decision_counts(decisions: Counter) -> dict[str, Any]:
    """Totals by outcome and by deciding rule since the worker started, read from the
    `tower_decisions` counter (so counting costs the hot path nothing extra)."""
    outcomes: dict[str, int] = {}
    rules: dict[str, int] = {}
    for family in decisions.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            n = int(sample.value)
            outcome, rule = sample.labels["outcome"], sample.labels["rule"]
            outcomes[outcome] = outcomes.get(outcome, 0) + n
            rules[rule] = rules.get(rule, 0) + n
    return {"total": sum(outcomes.values()), "outcomes": outcomes, "rules": rules}
