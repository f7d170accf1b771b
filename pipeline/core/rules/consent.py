"""Consent per channel and purpose, learned from `consent_changed` signals.

The newest mark among `channel:purpose`, `channel:all`, `*:purpose` and `*:all` wins;
without any mark the policy decides whether the category needs an opt-in.
"""

from __future__ import annotations

from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, PASS, RuleContext
from pipeline.core.state import ConsentMark

NAME = "consent"


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
