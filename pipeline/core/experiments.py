"""Control groups and agent holdouts: who is held back, so the tower can show what the agents
cause, not only what happened.

Assignment is a pure function of the policy's salt, the experiment and the customer id, so
every worker, a restart and a replay put a customer in the same arm. Withholding comes last
in the chain (after the transforms): a proposal the rules would have stopped anyway is not
counted as withheld, and both arms see the same rules. The first approved or withheld
proposal of an arm starts the customer's attribution window; outcomes (the signals below)
inside that window count for the arm, in event time.

Experiments, checked in this order, the first that withholds settles it:
  control_group       customers in `control_group.share` get no proposal of its categories
  holdout:<agent>     customers in the agent's share get none of its proposals, except
                      service and transactional ones (`policy.HOLDOUT_EXEMPT`)
An escalation (route_case) is never withheld: it hands the customer to a human.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pipeline.contracts.events import AgentEvent, Proposal
from pipeline.core.decision import (
    APPROVED,
    DEFERRED,
    PASS,
    WITHHELD,
    WITHHOLD,
    Decision,
    RuleStep,
)
from pipeline.core.experience import REPEAT_CONTACTS, Observation, finite_float, obs
from pipeline.core.policy import HOLDOUT_EXEMPT, Policy
from pipeline.core.state import Exposure

CONTROL_GROUP: Final = "control_group"  # experiment and rule name
HOLDOUT: Final = "holdout"  # rule name; the experiment is "holdout:<agent>"
EXPERIMENTS: Final = "experiments"  # rule name of the trace line of a treated proposal

CONTROL: Final = "control"
HELD_OUT: Final = "holdout"
TREATMENT: Final = "treatment"

# Metric names (the shell registers Prometheus counters under exactly these names).
EXPOSURES: Final = "tower_experiment_exposures"  # counter {experiment, arm}
OUTCOMES: Final = "tower_experiment_outcomes"  # counter {experiment, arm, metric}
OUTCOME_VALUES: Final = "tower_experiment_outcome_values"  # counter {experiment, arm, metric}

# Outcome metrics: `value` metrics also add their amount to OUTCOME_VALUES.
CONVERSION: Final = "conversion"  # a purchase signal
REVENUE: Final = "revenue"  # its amount
UNSUBSCRIBE: Final = "unsubscribe"  # a consent_changed withdrawal
COMPLAINT: Final = "complaint"  # a sentiment score below service_first.sentiment_threshold
REPEAT_CONTACT: Final = "repeat_contact"  # as the experience metric counts it
CSAT: Final = "csat"  # a csat score

#: (experiment, arm)
Arm = tuple[str, str]


def holdout_name(agent: str) -> str:
    return f"{HOLDOUT}:{agent}"


def bucket(salt: str, experiment: str, customer_id: str) -> float:
    """Where the customer falls in [0, 1) for this experiment: uniform and deterministic."""
    key = f"{salt}\x00{experiment}\x00{customer_id}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True, slots=True)
class Assignment:
    """The arms a proposal exposes the customer to, and the step that withholds it, if any."""

    arms: tuple[Arm, ...] = ()
    withheld: RuleStep | None = None

    @property
    def step(self) -> RuleStep:
        """The trace line: the withholding step, or which treatment arms let it through."""
        if self.withheld is not None:
            return self.withheld
        names = ", ".join(experiment for experiment, _ in self.arms)
        return RuleStep(EXPERIMENTS, PASS, f"treatment arm of {names}")


UNASSIGNED: Final = Assignment()


def assign(event: AgentEvent, proposal: Proposal, policy: Policy) -> Assignment:
    """The experiments this proposal takes part in, in order, up to the first that withholds."""
    ex = policy.experiments
    if not ex.armed:
        return UNASSIGNED
    arms: list[Arm] = []
    cg = ex.control_group
    if cg.share > 0 and proposal.category in cg.categories:
        if bucket(ex.salt, CONTROL_GROUP, event.customer_id) < cg.share:
            reason = f"customer is in the {cg.share:.0%} control group for {proposal.category}"
            step = RuleStep(CONTROL_GROUP, WITHHOLD, reason)
            return Assignment(((CONTROL_GROUP, CONTROL),), step)
        arms.append((CONTROL_GROUP, TREATMENT))
    share = ex.holdouts.get(event.agent, 0.0)
    if share > 0 and proposal.category not in HOLDOUT_EXEMPT:
        name = holdout_name(event.agent)
        if bucket(ex.salt, name, event.customer_id) < share:
            reason = f"customer is in {event.agent}'s {share:.0%} holdout"
            arms.append((name, HELD_OUT))
            return Assignment(tuple(arms), RuleStep(HOLDOUT, WITHHOLD, reason))
        arms.append((name, TREATMENT))
    return Assignment(tuple(arms)) if arms else UNASSIGNED


def expose(exposures: Mapping[str, Exposure], arms: Sequence[Arm], now: int) -> dict[str, Exposure]:
    """The exposures after a proposal of `arms` at `now`: a customer's first exposure to an
    arm starts its window; a later one (or the same arm again) changes nothing. An arm that
    differs from the stored one (the salt or share changed) starts a new window."""
    out = dict(exposures)
    for experiment, arm in arms:
        current = out.get(experiment)
        if current is None or current.arm != arm:
            out[experiment] = Exposure(arm, now)
    return out


def observe(
    exposures: Mapping[str, Exposure],
    event: AgentEvent,
    decision: Decision,
    experience: Sequence[Observation],
    policy: Policy,
) -> list[Observation]:
    """What one decision tells the per-arm counters; `exposures` is the state before it.

    `experience` are the experience metrics' observations of the same event, so a repeat
    contact is counted here exactly when the experience metrics count one.
    """
    out: list[Observation] = []
    if decision.outcome in (APPROVED, DEFERRED, WITHHELD):
        for experiment, arm in decision.experiments:
            current = exposures.get(experiment)
            if current is None or current.arm != arm:
                out.append(obs(EXPOSURES, experiment=experiment, arm=arm))
        return out
    if event.signal is None or not exposures:
        return out
    repeat = any(o.name == REPEAT_CONTACTS for o in experience)
    signal = event.signal
    threshold = policy.service_first.sentiment_threshold
    found = outcomes_of(signal.type, signal.attributes, threshold, repeat)
    if not found:
        return out
    window = policy.experiments.attribution_window_ms
    for experiment, exposure in exposures.items():
        if not exposure.at <= event.occurred_at < exposure.at + window:
            continue
        for metric, value in found:
            labels = (("experiment", experiment), ("arm", exposure.arm), ("metric", metric))
            out.append(Observation(OUTCOMES, labels, 1.0))
            if value is not None:
                out.append(Observation(OUTCOME_VALUES, labels, value))
    return out


def outcomes_of(
    kind: str, attrs: Mapping[str, str], complaint_below: float, repeat_contact: bool
) -> list[tuple[str, float | None]]:
    """The outcome metrics a signal of type `kind` is, each with its amount (None for a
    plain count). Shared by the in-stream counters and `tower report` (core/impact.py), so
    both count the same things.
    """
    out: list[tuple[str, float | None]] = []
    if kind == "purchase":
        out.append((CONVERSION, None))
        amount = finite_float(attrs.get("amount"))
        if amount is not None and amount > 0:
            out.append((REVENUE, amount))
    elif kind == "consent_changed" and attrs.get("granted", "").lower() == "false":
        out.append((UNSUBSCRIBE, None))
    elif kind == "sentiment":
        score = finite_float(attrs.get("score"))
        if score is not None and score < complaint_below:
            out.append((COMPLAINT, None))
    elif kind == "csat":
        score = finite_float(attrs.get("score"))
        if score is not None:
            out.append((CSAT, score))
    if repeat_contact:
        out.append((REPEAT_CONTACT, None))
    return out
