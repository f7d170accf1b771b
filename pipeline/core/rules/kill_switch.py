"""Kill switch: an operator stops an agent, department, action type or channel at once.

Silent (no trace line) while nothing is switched off, so ordinary traces stay short.
"""

from __future__ import annotations

from pipeline.core.decision import RuleStep
from pipeline.core.rules import BLOCK, PASS, RuleContext

NAME = "kill_switch"


def check(ctx: RuleContext) -> RuleStep | None:
    ks = ctx.policy.kill_switch
    if not ks.armed:
        return None
    ev = ctx.event
    if ev.agent in ks.agents:
        return RuleStep(NAME, BLOCK, f"agent {ev.agent} is switched off")
    if ev.department in ks.departments:
        return RuleStep(NAME, BLOCK, f"department {ev.department} is switched off")
    if ctx.proposal.action in ks.actions:
        return RuleStep(NAME, BLOCK, f"action {ctx.proposal.action} is switched off")
    if ev.channel in ks.channels:
        return RuleStep(NAME, BLOCK, f"channel {ev.channel} is switched off")
    return RuleStep(NAME, PASS, "agent, department, action and channel enabled")
