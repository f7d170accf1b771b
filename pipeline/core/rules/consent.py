"""Consent per channel and purpose, learned from `consent_changed` signals.

The newest mark among `channel:purpose`, `channel:all`, `*:purpose` and `*:all` wins;
without any mark the policy decides whether the category needs an opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping

from yaml.nodes import Node

from pipeline.contracts.events import CATEGORIES
from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import Invalid, Reader, boolean, fields
from pipeline.core.rules import RuleContext, RuleSpec
from pipeline.core.state import ConsentMark

NAME = "consent"

#: `opt_in_required`: categories whose outreach needs an explicit opt-in (consent_changed
#: granted=true)
OPT_IN_REQUIRED: Mapping[str, bool] = {
    "marketing": True,
    "sales": True,
    "service": False,
    "transactional": False,
}


def consent_keys(channel: str, purpose: str) -> tuple[str, str, str, str]:
    return (f"{channel}:{purpose}", f"{channel}:all", f"*:{purpose}", "*:all")


def latest_mark(consents: dict[str, ConsentMark], channel: str, purpose: str) -> ConsentMark | None:
    best: ConsentMark | None = None
    for key in consent_keys(channel, purpose):
        mark = consents.get(key)
        if mark is not None and (best is None or mark.at >= best.at):
            best = mark
    return best


def check(ctx: RuleContext) -> RuleStep:
    channel = ctx.event.channel or "*"
    category = ctx.proposal.category
    mark = latest_mark(ctx.state.consents, channel, category)
    if mark is None:
        if ctx.policy.opt_in_required.get(category, False):
            return RuleStep(NAME, BLOCK, f"no opt-in for {category} on {channel}")
        return RuleStep(NAME, PASS, f"{category} on {channel} needs no opt-in")
    if mark.granted:
        return RuleStep(NAME, PASS, f"consent for {category} on {channel} granted at {mark.at}")
    return RuleStep(NAME, BLOCK, f"consent for {category} on {channel} withdrawn at {mark.at}")


def read_opt_in(r: Reader, n: Node, p: str) -> dict[str, bool] | Invalid:
    """Categories not named keep their default, so a partial block cannot drop an opt-in."""
    return {**OPT_IN_REQUIRED, **fields(r, n, p, dict.fromkeys(CATEGORIES, boolean), frozenset())}


RULE = RuleSpec(NAME, check, {"opt_in_required": read_opt_in})
