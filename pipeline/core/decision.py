"""Decisions as data: the outcome, the ordered rule trace and the approved action, if any.

Ids are derived from the input alone, so replaying the same event under the same policy
yields byte-identical decisions, and a channel can dedupe on `action_id`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import msgspec

from pipeline.contracts.events import AgentEvent

APPROVED: Final = "approved"
DEFERRED: Final = "deferred"
SUPPRESSED: Final = "suppressed"
MERGED: Final = "merged"
ESCALATED: Final = "escalated"
HELD: Final = "held"
RECORDED: Final = "recorded"
DUPLICATE: Final = "duplicate"
#: held back by an experiment (core/experiments.py): the control group or an agent holdout
WITHHELD: Final = "withheld"

OUTCOMES: Final = (
    APPROVED,
    DEFERRED,
    SUPPRESSED,
    MERGED,
    ESCALATED,
    HELD,
    RECORDED,
    DUPLICATE,
    WITHHELD,
)
#: Outcomes that emit an action on `approved-actions`.
EMITTING: Final = frozenset({APPROVED, DEFERRED, ESCALATED})

#: What one step of the rule trace says. Every verdict string is defined here and only here;
#: only `pass` and `defer` let the rule chain go on.
Verdict = Literal[
    "pass",
    "block",
    "merge",
    "defer",
    "escalate",
    "transform",
    "hold",
    "withhold",
    "record",
    "duplicate",  # the replay step's verdict on an event id decided before: `DUPLICATE`
]
PASS: Final = "pass"
BLOCK: Final = "block"
#: the trigger was already answered: the proposal joins that decision
MERGE: Final = "merge"
#: quiet hours: approved, to go out at `not_before`; later rules still apply
DEFER: Final = "defer"
#: routed to a human queue as a route_case instead (rules/escalation.py)
ESCALATE: Final = "escalate"
#: a content transform changed what goes out (rules/transforms.py)
TRANSFORM: Final = "transform"
#: parked in a hold window until its deadline (core/hold_windows.py)
HOLD: Final = "hold"
#: held back by an experiment (core/experiments.py)
WITHHOLD: Final = "withhold"
#: a signal, recorded into the state
RECORD: Final = "record"
VERDICTS: Final[frozenset[str]] = frozenset(get_args(Verdict))


def decision_id_for(customer_id: str, event_id: str) -> str:
    digest = hashlib.blake2b(f"{customer_id}\x00{event_id}".encode(), digest_size=10)
    return "d-" + digest.hexdigest()


def action_id_for(decision_id: str) -> str:
    return "a-" + hashlib.blake2b(decision_id.encode(), digest_size=10).hexdigest()


class RuleStep(msgspec.Struct, frozen=True):
    """One line of the rule trace: which rule looked, what it said, and why."""

    rule: str
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "verdict": self.verdict, "reason": self.reason}


class ApprovedAction(msgspec.Struct, frozen=True):
    """What a channel receives: one action, already arbitrated and transformed."""

    action_id: str
    decision_id: str
    customer_id: str
    channel: str | None
    action: str
    category: str
    content: str | None
    offer_id: str | None
    offer_value: float | None
    conversation_id: str | None
    asserts: Mapping[str, str]
    source_event_ids: tuple[str, ...]
    agents: tuple[str, ...]
    decided_at: int
    not_before: int | None
    policy_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "decision_id": self.decision_id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "action": self.action,
            "category": self.category,
            "content": self.content,
            "offer_id": self.offer_id,
            "offer_value": self.offer_value,
            "conversation_id": self.conversation_id,
            "asserts": dict(self.asserts),
            "source_event_ids": list(self.source_event_ids),
            "agents": list(self.agents),
            "decided_at": self.decided_at,
            "not_before": self.not_before,
            "policy_version": self.policy_version,
        }


class Wakeup(msgspec.Struct, frozen=True):
    """The deadline of a hold just opened: the shell publishes it as a wake-up record and
    releases the hold when that record comes back in-stream."""

    hold_id: str
    deadline: int  # event time, ms


class Decision(msgspec.Struct, frozen=True):
    """The core's answer for one event; the shell turns it into audit and action records."""

    decision_id: str
    event_id: str
    customer_id: str
    outcome: str
    rule: str | None
    reason: str
    trace: tuple[RuleStep, ...]
    policy_version: str
    decided_at: int
    action: ApprovedAction | None = None
    merged_into: str | None = None
    #: set only on the decision that opens a hold (`hold_windows.park`)
    wakeup: Wakeup | None = None
    #: (experiment, arm) this proposal exposed the customer to (approved, deferred, withheld)
    experiments: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_event(
        cls,
        event: AgentEvent,
        decision_id: str,
        policy_version: str,
        now: int,
        outcome: str,
        rule: str | None,
        reason: str,
        trace: tuple[RuleStep, ...],
        *,
        action: ApprovedAction | None = None,
        merged_into: str | None = None,
        wakeup: Wakeup | None = None,
        experiments: tuple[tuple[str, str], ...] = (),
    ) -> Decision:
        """The decision on `event` at event time `now`, its event and customer ids taken from
        the event: call sites name only what differs (outcome, rule, reason, trace...)."""
        return cls(
            decision_id,
            event.event_id,
            event.customer_id,
            outcome,
            rule,
            reason,
            trace,
            policy_version,
            now,
            action,
            merged_into,
            wakeup,
            experiments,
        )

    @property
    def action_id(self) -> str | None:
        return None if self.action is None else self.action.action_id
