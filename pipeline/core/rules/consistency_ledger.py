"""Consistency ledger: the customer is never told two different values for one fact.

A conflicting proposal is suppressed (the reason names the fact and who said it first), or
with `escalation.consistency_escalates` escalated: the core routes it to the human queue as
a route_case instead. An agent that outranks the first speaker in `policy.authority` is
approved as a correction and the ledger updated. Silent for proposals that assert nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.core.decision import BLOCK, ESCALATE, PASS, RuleStep
from pipeline.core.policy_reader import count
from pipeline.core.rules import RuleContext, RuleSpec
from pipeline.core.state import Fact

if TYPE_CHECKING:  # the policy is built from the rules' settings, so it imports them
    from pipeline.core.policy import Policy

NAME = "consistency_ledger"


def check(ctx: RuleContext) -> RuleStep | None:
    asserts = ctx.proposal.asserts
    if not asserts:
        return None
    facts = ctx.state.facts
    policy = ctx.policy
    agent = ctx.event.agent
    corrections: list[str] = []
    for key, value in asserts.items():
        known = facts.get(key)
        if known is None or known.value == value:
            continue
        if policy.rank(agent) < policy.rank(known.agent):
            corrections.append(key)
            continue
        return RuleStep(
            NAME,
            ESCALATE if policy.escalation.consistency_escalates else BLOCK,
            f"{key}={value!r} contradicts {known.value!r} told by {known.agent} at {known.at}",
        )
    if corrections:
        fixed = ", ".join(sorted(corrections))
        return RuleStep(NAME, PASS, f"correction of {fixed} by higher authority {agent}")
    return RuleStep(NAME, PASS, f"consistent with the ledger: {', '.join(sorted(asserts))}")


def record(
    facts: dict[str, Fact], asserts: Mapping[str, str], agent: str, policy: Policy, now: int
) -> dict[str, Fact]:
    """The ledger after an approved action: new facts and corrections in, oldest out."""
    if not asserts:
        return facts
    out = dict(facts)
    for key, value in asserts.items():
        known = out.get(key)
        if known is None or known.value != value:
            out.pop(key, None)  # re-insert so the newest stays last
            out[key] = Fact(value, agent, now)
    while len(out) > policy.max_facts:
        del out[next(iter(out))]
    return out


#: `max_facts`: how many asserted facts the ledger keeps per customer (oldest dropped). Who
#: may correct a fact is `authority`, the policy's own ranking of agents.
RULE = RuleSpec(NAME, check, {"max_facts": count(0)})
