"""What-if: re-decide recorded input under two policies and count what would change.

Pure: takes decoded events, returns a report. Each policy gets its own chain of customer
states, because a policy change alters state too (an approval the old policy gave uses up a
cap slot that the new one may leave free), so comparing decision by decision against the
old chain would be wrong after the first difference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.contracts.events import AgentEvent
from pipeline.core.arbitration import decide, release
from pipeline.core.decision import HELD, Decision
from pipeline.core.policy import Policy
from pipeline.core.state import EMPTY_STATE, CustomerState

EXAMPLES_PER_TRANSITION = 3


def label(decision: Decision) -> str:
    """`outcome/rule`, or just the outcome when no rule settled it (e.g. approved)."""
    return f"{decision.outcome}/{decision.rule}" if decision.rule else decision.outcome


@dataclass(slots=True)
class WhatIfReport:
    old_version: str
    new_version: str
    events: int = 0
    old_outcomes: Counter[str] = field(default_factory=Counter)
    new_outcomes: Counter[str] = field(default_factory=Counter)
    #: (old label, new label) -> count, for every pair, changed or not
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (old label, new label) -> first event ids, only for changed pairs
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: changed decisions by the rule that settles the new one (else the old one's), by
    #: agent and by channel ("-" for none)
    changed_by_rule: Counter[str] = field(default_factory=Counter)
    changed_by_agent: Counter[str] = field(default_factory=Counter)
    changed_by_channel: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return sum(n for (a, b), n in self.transitions.items() if a != b)

    def changed_transitions(self) -> list[tuple[tuple[str, str], int]]:
        """Changed pairs, most frequent first (ties by name, so output is stable)."""
        pairs = [(k, n) for k, n in self.transitions.items() if k[0] != k[1]]
        return sorted(pairs, key=lambda kn: (-kn[1], kn[0]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "events": self.events,
            "changed": self.changed,
            "old_outcomes": dict(sorted(self.old_outcomes.items())),
            "new_outcomes": dict(sorted(self.new_outcomes.items())),
            "transitions": [
                {"old": a, "new": b, "count": n, "examples": self.examples.get((a, b), [])}
                for (a, b), n in sorted(self.transitions.items(), key=lambda kn: (-kn[1], kn[0]))
            ],
        }


def what_if(events: Iterable[AgentEvent], old: Policy, new: Policy) -> WhatIfReport:
    """Decide every event under both policies, in the given order, using event time.

    Held proposals count with their final decision: a hold is released once event time
    passes its deadline (as a live worker does), and any still open at the end are released.
    """
    events = list(events)
    report = WhatIfReport(old.policy_version, new.policy_version)
    before, after = final_decisions(events, old), final_decisions(events, new)
    for i, ev in enumerate(events):
        a, b = before[i], after[i]
        la, lb = label(a), label(b)
        report.events += 1
        report.old_outcomes[a.outcome] += 1
        report.new_outcomes[b.outcome] += 1
        report.transitions[(la, lb)] += 1
        if la != lb:
            report.changed_by_rule[b.rule or a.rule or "-"] += 1
            report.changed_by_agent[ev.agent] += 1
            report.changed_by_channel[ev.channel or "-"] += 1
            ids = report.examples.setdefault((la, lb), [])
            if len(ids) < EXAMPLES_PER_TRANSITION:
                ids.append(ev.event_id)
    return report


def final_decisions(events: list[AgentEvent], policy: Policy) -> list[Decision]:
    """The final decision for each event, by position in `events`."""
    states: dict[str, CustomerState] = {}
    finals: dict[int, Decision] = {}
    pending: dict[str, int] = {}  # held event id -> its position

    def settle(customer: str, until: int | None) -> None:
        state = states[customer]
        for hold_id, hold in list(state.holds.items()):
            if until is None or hold.deadline <= until:
                released, state = release(state, customer, hold_id, policy)
                for d in released:
                    finals[pending.pop(d.event_id)] = d
        states[customer] = state

    for i, ev in enumerate(events):
        c = ev.customer_id
        if c in states and states[c].holds:
            settle(c, ev.occurred_at)
        d, states[c] = decide(states.get(c, EMPTY_STATE), ev, policy, ev.occurred_at)
        if d.outcome == HELD:
            pending[ev.event_id] = i
        else:
            finals[i] = d
    for c in list(states):
        settle(c, None)
    return [finals[i] for i in range(len(events))]
