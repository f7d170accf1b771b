"""Offer arbitration: a customer holds at most one offer per window.

Offers are ranked by score (priority x propensity x value, weighted, missing factors count
as 1), ties broken by agent authority. The active offer was already made, so within its
window every other offer is suppressed; the reason names the winner and why it won.
Silent for non-offers and while the window is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts.events import Proposal
from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import off_or_ms, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "offer_arbitration"


@dataclass(frozen=True, slots=True)
class OfferArbitration:
    """One active offer per customer per `window_ms` (0 switches the rule off).

    Score = priority^priority_weight x propensity^propensity_weight x value^value_weight;
    weights are exponents because the factors multiply (a weight of 0 ignores a factor).
    """

    window_ms: int = 0
    priority_weight: float = 1.0
    propensity_weight: float = 1.0
    value_weight: float = 1.0


def is_offer(p: Proposal) -> bool:
    return p.action == "offer" or p.offer_id is not None


def score(p: Proposal, weights: OfferArbitration) -> float:
    propensity = 1.0 if p.propensity is None else max(p.propensity, 0.0)
    value = 1.0 if p.offer_value is None else max(p.offer_value, 0.0)
    # typeshed types `float ** float` as Any (a negative base can give a complex); every
    # base here is clamped to >= 0, so the product is a float
    result: float = (
        max(p.priority, 0) ** weights.priority_weight
        * propensity**weights.propensity_weight
        * value**weights.value_weight
    )
    return result


def check(ctx: RuleContext) -> RuleStep | None:
    weights = ctx.policy.offers
    p = ctx.proposal
    if weights.window_ms <= 0 or not is_offer(p):
        return None
    mine = score(p, weights)
    name = p.offer_id or "offer"
    active = ctx.state.offer
    if active is None or ctx.now - active.at >= weights.window_ms:
        return RuleStep(NAME, PASS, f"{name} (score {mine:.4g}) is the only active offer")
    until = active.at + weights.window_ms
    winner = f"active offer {active.offer_id} by {active.agent} (score {active.score:.4g})"
    if mine < active.score:
        why = "scores higher"
    elif mine == active.score:
        rank = ctx.policy.rank
        why = (
            "ties and its agent has precedence"
            if rank(active.agent) <= rank(ctx.event.agent)
            else "ties; it was made first, one offer per window"
        )
    else:
        why = "was made first, one offer per window"
    return RuleStep(NAME, BLOCK, f"{name} (score {mine:.4g}) loses: {winner} {why}, until {until}")


RULE = RuleSpec(
    NAME,
    check,
    {
        "offers": section(
            OfferArbitration,
            {
                "window_ms": off_or_ms,
                "priority_weight": lambda r, n, p: r.number(n, p, 0.0),
                "propensity_weight": lambda r, n, p: r.number(n, p, 0.0),
                "value_weight": lambda r, n, p: r.number(n, p, 0.0),
            },
        )
    },
)
