"""Arbitration rules: small pure functions, each returning a verdict with a reason.

A rule looks at a `RuleContext` and returns a `RuleStep`; the engine runs them in policy
order and stops at the first that does not pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.contracts.events import AgentEvent, Proposal
from pipeline.core.decision import RuleStep
from pipeline.core.policy import Policy
from pipeline.core.state import CustomerState


@dataclass(frozen=True, slots=True)
class RuleContext:
    event: AgentEvent
    proposal: Proposal
    state: CustomerState
    policy: Policy
    now: int


Rule = Callable[[RuleContext], RuleStep]

PASS = "pass"
BLOCK = "block"
MERGE = "merge"
