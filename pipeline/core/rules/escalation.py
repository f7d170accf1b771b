"""Escalation: a customer who needs a human gets one instead of another AI answer.

The needs-human mark is set by signals (signals.py: repeat contact, a negative sentiment
streak, an explicit request) and cleared by case_resolved. While it is set, the rule looks at
AI-generated customer service: `answer`s, and `message`s of category `service` (marketing and
sales are service_first's business). The first such proposal is escalated: the core turns
it into an approved `route_case` action to the policy's queue (outcome `escalated`), and every
later one is suppressed until the handoff is resolved. Silent otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts.events import Proposal
from pipeline.core.decision import BLOCK, ESCALATE, RuleStep
from pipeline.core.policy_reader import DAY_MS, boolean, count, positive_ms, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "escalation"


@dataclass(frozen=True, slots=True)
class Escalation:
    """When a customer needs a human instead of another AI answer.

    Three triggers put the customer in "needs human" state: `repeat_contacts` inbound
    contacts (message_received or case_opened) within `repeat_window_ms`; a streak of
    `negative_streak` consecutive sentiment scores below `sentiment_threshold`; an explicit
    request (handoff_to_human, or message_received with intent=human) if `explicit_request`.
    0 / false switches a trigger off. The next AI answer is routed to `queue` instead, and
    AI answers stay suppressed until case_resolved. `consistency_escalates` routes a
    contradiction the consistency ledger would suppress to `queue` as well.
    """

    repeat_contacts: int = 0
    repeat_window_ms: int = DAY_MS
    negative_streak: int = 0
    sentiment_threshold: float = -0.5
    explicit_request: bool = False
    queue: str = "human-care"
    consistency_escalates: bool = False

    @property
    def armed(self) -> bool:
        return bool(self.repeat_contacts or self.negative_streak or self.explicit_request)


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


RULE = RuleSpec(
    NAME,
    check,
    {
        "escalation": section(
            Escalation,
            {
                "repeat_contacts": count(0),
                "repeat_window_ms": positive_ms,
                "negative_streak": count(0),
                "sentiment_threshold": lambda r, n, p: r.number(n, p),
                "explicit_request": boolean,
                "queue": lambda r, n, p: r.text(n, p),
                "consistency_escalates": boolean,
            },
        )
    },
)
