"""Escalation: a customer who needs a human gets one instead of another AI answer.

The needs-human mark is set by signals (signals.py: repeat contact, a negative sentiment
streak, an explicit request) and cleared by case_resolved. While it is set, the rule looks at
AI-generated customer service: `answer`s, and `message`s of category `service` (marketing and
sales are service_first's business). The first such proposal is escalated: the engine turns
it into an approved `route_case` action to the policy's queue (outcome `escalated`), and every
later one is suppressed until the handoff is resolved. Silent otherwise.
"""

from __future__ import annotations

from pipeline.contracts.events import Proposal
from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, RuleContext

NAME = "escalation"
ESCALATE = "escalate"


def applies(p: Proposal) -> bool:
    """AI-generated service to the customer: what a human should take over."""
    return p.ai_generated and (
        p.action == "answer" or (p.action == "message" and p.category == "service")
    )


def check(ctx: RuleContext) -> RuleStep | None:
    handoff = ctx.state.handoff
    if handoff is None or not applies(ctx.proposal):
        return None
    if handoff.action_id is None:
        queue = ctx.policy.escalation.queue
        return RuleStep(NAME, ESCALATE, f"needs a human ({handoff.reason}): routed to {queue}")
    return RuleStep(
        NAME,
        BLOCK,
        f"needs a human ({handoff.reason}): AI answers held until {handoff.action_id} is resolved",
    )


def route_content(reason: str, queue: str) -> str:
    """The route_case content a human queue receives."""
    return f"escalated to {queue}: {reason}"
