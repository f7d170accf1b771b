"""Loop prevention: never ask the customer for what the tower already knows.

A proposal's template is the longest `loop_prevention.templates` id its `content` starts
with; the template lists what the message asks for (order_number, email, ...). Facts are
known from signals (signals.py: profile_updated attributes, purchase order_id as
order_number). Asking for a known fact is suppressed, or with `action: rewrite` approved
and annotated by the `known_facts` transform (rules/transforms.py). Silent when the rule is
off or the content matches no template.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.decision import RuleStep
from pipeline.core.policy import LoopPrevention
from pipeline.core.rules import BLOCK, PASS, RuleContext

NAME = "loop_prevention"


def template_for(content: str | None, lp: LoopPrevention) -> str | None:
    """The id of the longest template `content` starts with, if any."""
    if not content or not lp.templates:
        return None
    best: str | None = None
    for tid in lp.templates:
        if content.startswith(tid) and (best is None or len(tid) > len(best)):
            best = tid
    return best


def known_asks(content: str | None, lp: LoopPrevention, known: Mapping[str, str]) -> list[str]:
    """The facts the proposal's template asks for that are already known, sorted."""
    tid = template_for(content, lp)
    if tid is None:
        return []
    return sorted(k for k in lp.templates[tid] if k in known)


def check(ctx: RuleContext) -> RuleStep | None:
    lp = ctx.policy.loop_prevention
    tid = template_for(ctx.proposal.content, lp)
    if tid is None:
        return None
    asks = sorted(lp.templates[tid])
    known = [k for k in asks if k in ctx.state.known]
    if not known:
        return RuleStep(NAME, PASS, f"template {tid} asks for {', '.join(asks)}: none known")
    what = ", ".join(known)
    if lp.action == "rewrite":
        return RuleStep(NAME, PASS, f"template {tid} asks for {what}, already known: annotated")
    return RuleStep(NAME, BLOCK, f"template {tid} asks for {what}, already known from signals")
