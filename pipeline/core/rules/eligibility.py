"""Eligibility: a proposal must still be current when it is decided."""

from __future__ import annotations

from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, PASS, RuleContext

NAME = "eligibility"


def check(ctx: RuleContext) -> RuleStep:
    expires_at = ctx.proposal.expires_at
    if expires_at is not None and expires_at <= ctx.now:
        return RuleStep(NAME, BLOCK, f"proposal expired at {expires_at}, decided at {ctx.now}")
    return RuleStep(NAME, PASS, "proposal is current")
