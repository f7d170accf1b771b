"""Eligibility: a proposal must still be current when it is decided."""

from __future__ import annotations

from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "eligibility"


def check(ctx: RuleContext) -> RuleStep:
    expires_at = ctx.proposal.expires_at
    if expires_at is not None and expires_at <= ctx.now:
        return RuleStep(NAME, BLOCK, f"proposal expired at {expires_at}, decided at {ctx.now}")
    return RuleStep(NAME, PASS, "proposal is current")


RULE = RuleSpec(NAME, check)  # no settings: an expired proposal is never current
