"""Every rule, in the order the core runs them, and the policy sections they read.

The order is fixed here, not by the policy, because each rule's place is part of what it
means (why each sits where it does is on its line). `CHAIN_CHECKS` and `SECTION_READERS` are
built once at import: the decision path iterates a plain tuple of functions.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.policy_reader import Section
from pipeline.core.rules import (
    Rule,
    RuleSpec,
    consent,
    consistency_ledger,
    duplicate_merge,
    eligibility,
    escalation,
    frequency_caps,
    kill_switch,
    loop_prevention,
    offer_arbitration,
    quiet_hours,
    service_first,
    transforms,
)

#: The proposal chain. Only `defer` lets the chain continue besides `pass`: a deferred
#: action must still pass every later rule. `escalate` stops the chain like a block, but
#: the core emits a route_case.
CHAIN: tuple[RuleSpec, ...] = (
    # operator override, beats everything
    kill_switch.RULE,
    # expired proposals
    eligibility.RULE,
    # one action per trigger (merges into the first approved)
    duplicate_merge.RULE,
    # a customer who needs a human: the first AI answer becomes a route_case (outcome
    # escalated), later ones are suppressed until case_resolved; before consent, since a
    # route_case is internal work, not a contact
    escalation.RULE,
    # opt-in / opt-out per channel and purpose
    consent.RULE,
    # no selling during an open case or after a complaint
    service_first.RULE,
    # no asking for what signals already told us (or annotate, see transforms)
    loop_prevention.RULE,
    # no contradicting what the customer was told (or escalate it)
    consistency_ledger.RULE,
    # one active offer per window
    offer_arbitration.RULE,
    # defer (continue) or suppress at the customer's night
    quiet_hours.RULE,
    # last, so merged or blocked proposals never consume a contact
    frequency_caps.RULE,
)

#: After the chain, for approved and deferred proposals only: the content transforms
#: (known facts, banned phrases, PII, AI disclosure, maximum length, in that order). They
#: may still suppress (banned phrase, too long). Then `experiments.assign` withholds what
#: the control group or an agent holdout keeps back, so a proposal the rules stopped is
#: never counted as withheld.
AFTER_CHAIN: tuple[RuleSpec, ...] = (transforms.RULE,)

RULES: tuple[RuleSpec, ...] = (*CHAIN, *AFTER_CHAIN)


def _checks(chain: tuple[RuleSpec, ...]) -> tuple[Rule, ...]:
    checks: list[Rule] = []
    for spec in chain:
        if spec.check is None:
            raise ValueError(f"rule {spec.name} has no check: list it in AFTER_CHAIN instead")
        checks.append(spec.check)
    return tuple(checks)


def _readers(rules: tuple[RuleSpec, ...]) -> Mapping[str, Section]:
    readers: dict[str, Section] = {}
    owner: dict[str, str] = {}
    for spec in rules:
        for key, read in spec.sections.items():
            if key in readers:
                raise ValueError(f"policy section {key!r} claimed by {owner[key]} and {spec.name}")
            readers[key], owner[key] = read, spec.name
    return readers


#: What `arbitration.decide` runs, in order.
CHAIN_CHECKS: tuple[Rule, ...] = _checks(CHAIN)
#: Policy section -> its document reader, for every section a rule owns.
SECTION_READERS: Mapping[str, Section] = _readers(RULES)
