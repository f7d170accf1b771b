"""Arbitration rules: small pure functions, each returning a verdict with a reason.

A rule looks at a `RuleContext` and returns a `RuleStep` (or None when it has nothing to say,
which leaves no line in the trace). The core runs the rules in the fixed order of
`registry.CHAIN` and stops at the first whose verdict is neither pass nor defer; the policy
switches rules on and tunes them, it does not reorder them.

Each rule module holds everything about its rule: the settings dataclass, the reader of its
policy sections (built from `policy_reader`), its `check` and a `RULE = RuleSpec(...)` that
the registry lists.

How to add a rule:

1. Write `pipeline/core/rules/<rule>.py`: a docstring saying what the rule protects the
   customer from; `NAME`; a frozen settings dataclass whose defaults keep the rule off (or
   silent for ordinary traffic); `check(ctx) -> RuleStep | None`, returning None while
   switched off, with a verdict from `pipeline.core.decision` (add one there only if no
   existing verdict says it); and `RULE = RuleSpec(NAME, check, {"<section>": reader})`,
   the reader made with `policy_reader.section(Settings, {...})`.
2. List `<rule>.RULE` in `registry.CHAIN` at its place in the order, with the line saying
   why it sits there.
3. Give `Policy` (core/policy.py) the typed field `<section>: Settings`. Leave
   `ALWAYS_HASHED` alone: a section outside it enters the version hash only when set, so
   every existing policy keeps its version.
4. Write `tests/unit/core/rules/test_<rule>.py`: a table of (situation, expected verdict,
   expected reason) through `check`, and the policy section read from YAML, including one
   invalid value and its error line.
5. Show the rule in `deploy/policy.showcase.yaml` (the recorded run keeps its own copy, so
   its bytes do not move), and add its row to the rules table of docs/policy.md at its
   place in the order.

`tests/unit/core/rules/test_registry.py` fails until steps 1, 2, 3 and 5 agree: every module
here is registered, every policy section is read by exactly one rule or by the policy
itself, and the chain runs in the order docs/policy.md lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.contracts.events import AgentEvent, Proposal
from pipeline.core.decision import RuleStep
from pipeline.core.policy_reader import Section
from pipeline.core.state import CustomerState

if TYPE_CHECKING:  # the policy is built from the rules' settings, so it imports them
    from pipeline.core.policy import Policy


@dataclass(frozen=True, slots=True)
class RuleContext:
    event: AgentEvent
    proposal: Proposal
    state: CustomerState
    policy: Policy
    now: int


#: A rule: a RuleStep, or None when it has nothing to say (switched off, or not its kind of
#: proposal).
Rule = Callable[[RuleContext], RuleStep | None]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What the registry knows of one rule: its trace name, its check, and the top-level
    policy sections it owns with the reader of each (a section is a `Policy` field)."""

    name: str
    #: None for a rule outside the proposal chain (the content transforms run after it)
    check: Rule | None
    sections: Mapping[str, Section] = field(default_factory=dict)
