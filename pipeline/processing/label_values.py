"""Bounded label values: the free-text labels producers choose (agent, journey, step) keep
only the values the policy declares; any other value is counted as `other`.

A producer sending a new agent name per event would otherwise grow one series per name
until Prometheus runs out of memory. The allow-lists follow the policy in force (hot
reloads included); while a policy declares none, the first `UNDECLARED_LIMIT` values seen
are kept by name, so a small deployment without declarations still sees its agents.
"""

from __future__ import annotations

from pipeline.core.policy import Policy

OTHER = "other"
#: distinct values kept by name for a label the policy declares no values of
UNDECLARED_LIMIT = 50


class AllowedValues:
    """One label's values: the declared ones, else the first `UNDECLARED_LIMIT` seen."""

    __slots__ = ("declared", "seen")

    def __init__(self) -> None:
        self.declared: frozenset[str] | None = None
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        """`value`, or `other`: one set lookup for a known value."""
        declared = self.declared
        if declared is not None:
            return value if value in declared else OTHER
        seen = self.seen
        if value in seen:
            return value
        if len(seen) >= UNDECLARED_LIMIT:
            return OTHER
        seen.add(value)
        return value

    def declare(self, names: frozenset[str]) -> None:
        """The values a policy declares; none: the first seen again."""
        self.declared = names or None


class LabelValues:
    """The allow-lists of the bounded labels, from the policy given to `follow`."""

    def __init__(self) -> None:
        self.agent = AllowedValues()
        self.journey = AllowedValues()
        self.step = AllowedValues()
        self._policy: Policy | None = None
        #: label name -> its allow-list, for metrics labelled by name
        self.by_label = {"agent": self.agent, "journey": self.journey, "step": self.step}

    def follow(self, policy: Policy) -> None:
        """Take the allow-lists of `policy` (cheap when it is the one already followed)."""
        if policy is self._policy:
            return
        self._policy = policy
        self.agent.declare(policy.agents)
        self.journey.declare(frozenset(policy.journeys))
        self.step.declare(frozenset().union(*policy.journeys.values()))
