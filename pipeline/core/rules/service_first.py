"""Service first: no selling while the customer waits on a case or has just complained.

Only the categories the policy names (marketing and sales by default) are held back; for
others the rule is silent.
"""

from __future__ import annotations

from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, PASS, RuleContext

NAME = "service_first"


def check(ctx: RuleContext) -> RuleStep | None:
    sf = ctx.policy.service_first
    category = ctx.proposal.category
    if category not in sf.categories:
        return None
    now = ctx.now
    horizon = now - sf.case_max_age_ms
    open_cases = [k for k, at in ctx.state.open_cases.items() if horizon < at <= now]
    if open_cases:
        return RuleStep(NAME, BLOCK, f"no {category} while case {open_cases[-1]} is open")
    at = ctx.state.complaint_at
    if at is not None and at <= now < at + sf.complaint_cooldown_ms:
        until = at + sf.complaint_cooldown_ms
        return RuleStep(NAME, BLOCK, f"no {category} after a complaint at {at} until {until}")
    return RuleStep(NAME, PASS, "no open case, no recent complaint")
