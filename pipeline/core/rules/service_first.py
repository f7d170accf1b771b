"""Service first: no selling while the customer waits on a case or has just complained.

Only the categories the policy names (marketing and sales by default) are held back; for
others the rule is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts.events import CATEGORIES
from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import DAY_MS, count, name_set, off_or_ms, positive_ms, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "service_first"


@dataclass(frozen=True, slots=True)
class ServiceFirst:
    """No selling to a customer with an open case or a fresh complaint.

    Cases older than `case_max_age_ms` count as closed, so a lost `case_resolved` signal
    cannot silence a customer for ever.
    """

    categories: frozenset[str] = frozenset({"marketing", "sales"})
    complaint_cooldown_ms: int = 2 * DAY_MS
    sentiment_threshold: float = -0.5
    case_max_age_ms: int = 30 * DAY_MS
    max_open_cases: int = 20


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


RULE = RuleSpec(
    NAME,
    check,
    {
        "service_first": section(
            ServiceFirst,
            {
                "categories": name_set(CATEGORIES, "category"),
                "complaint_cooldown_ms": off_or_ms,
                "sentiment_threshold": lambda r, n, p: r.number(n, p),
                "case_max_age_ms": positive_ms,
                "max_open_cases": count(1),
            },
        )
    },
)
