"""Duplicate merge: one customer trigger becomes one action, the first approved one."""

from __future__ import annotations

from pipeline.core.decision import RuleStep
from pipeline.core.rules import MERGE, PASS, RuleContext

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
