"""Kill switch: an operator stops an agent, department, action type or channel at once.

Silent (no trace line) while nothing is switched off, so ordinary traces stay short.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts.events import ACTIONS, CHANNELS
from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import Invalid, name_set, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "kill_switch"


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Stop an agent, a department, an action type or a channel at once, without a deploy."""

    agents: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @property
    def armed(self) -> bool:
        return bool(self.agents or self.departments or self.actions or self.channels)


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


RULE = RuleSpec(
    NAME,
    check,
    {
        "kill_switch": section(
            KillSwitch,
            {
                "agents": lambda r, n, p: (
                    a if isinstance(a := r.agent_names(n, p), Invalid) else frozenset(a)
                ),
                "departments": name_set(None, "department"),
                "actions": name_set(ACTIONS, "action"),
                "channels": name_set(CHANNELS, "channel"),
            },
        )
    },
)
