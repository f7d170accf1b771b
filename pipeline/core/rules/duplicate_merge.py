"""Duplicate merge: one customer trigger becomes one action, the first approved one."""

from __future__ import annotations

from pipeline.core.decision import MERGE, PASS, RuleStep
from pipeline.core.policy_reader import positive_ms
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "duplicate_merge"


def check(ctx: RuleContext) -> RuleStep:
    trigger = ctx.event.trigger
    if trigger is None:
        return RuleStep(NAME, PASS, "no trigger")
    memo = ctx.state.triggers.get(trigger)
    if memo is not None and ctx.now - memo.at < ctx.policy.merge_window_ms:
        return RuleStep(
            NAME, MERGE, f"trigger {trigger} already answered by {memo.decision_id} at {memo.at}"
        )
    return RuleStep(NAME, PASS, f"first approved proposal for trigger {trigger}")


#: `merge_window_ms`: how long a trigger's first approved action absorbs later proposals
RULE = RuleSpec(NAME, check, {"merge_window_ms": positive_ms})
