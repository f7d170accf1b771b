"""`decide(state, event, policy, now) -> (Decision, CustomerState)`: the pure decision core.

No I/O, no clock: `now` is event time, supplied by the caller, so the audit log plus the
policy version replays every decision exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pipeline.contracts.events import AgentEvent, Proposal
from pipeline.core.decision import (
    APPROVED,
    DUPLICATE,
    MERGED,
    RECORDED,
    SUPPRESSED,
    ApprovedAction,
    Decision,
    RuleStep,
    action_id_for,
    decision_id_for,
)
from pipeline.core.policy import Policy
from pipeline.core.rules import (
    MERGE,
    PASS,
    Rule,
    RuleContext,
    consent,
    duplicate_merge,
    eligibility,
    frequency_caps,
)
from pipeline.core.signals import apply_signal
from pipeline.core.state import Contact, CustomerState, TriggerMemo

#: Rule order: cheap, definitive checks first; caps last so merged or blocked proposals
#: never consume a contact.
PROPOSAL_RULES: tuple[Rule, ...] = (
    eligibility.check,
    duplicate_merge.check,
    consent.check,
    frequency_caps.check,
)

REPLAY = "replay"
#: Approved actions of these kinds are not customer contacts (they move work, not messages).
NON_CONTACT_ACTIONS = frozenset({"route_case"})


def decide(
    state: CustomerState, event: AgentEvent, policy: Policy, now: int
) -> tuple[Decision, CustomerState]:
    decision_id = decision_id_for(event.customer_id, event.event_id)
    version = policy.policy_version

    earlier = state.seen.get(event.event_id)
    if earlier is not None:
        step = RuleStep(REPLAY, DUPLICATE, f"event {event.event_id} already decided as {earlier}")
        return (
            Decision(
                decision_id,
                event.event_id,
                event.customer_id,
                DUPLICATE,
                REPLAY,
                step.reason,
                (step,),
                version,
                now,
            ),
            state,
        )
    replay_step = RuleStep(REPLAY, PASS, "first time this event id is seen")

    if event.proposal is None:
        new_state = apply_signal(state, event)
        step = RuleStep(
            "signal", "record", f"{event.signal.type if event.signal else 'signal'} recorded"
        )
        decision = Decision(
            decision_id,
            event.event_id,
            event.customer_id,
            RECORDED,
            None,
            step.reason,
            (replay_step, step),
            version,
            now,
        )
        return decision, _remember(new_state, event.event_id, decision_id, policy, now)

    ctx = RuleContext(event, event.proposal, state, policy, now)
    trace, verdict = run_rules(ctx, PROPOSAL_RULES)
    trace = (replay_step, *trace)
    last = trace[-1]
    if verdict == MERGE:
        memo = state.triggers[event.trigger or ""]
        decision = Decision(
            decision_id,
            event.event_id,
            event.customer_id,
            MERGED,
            last.rule,
            last.reason,
            trace,
            version,
            now,
            merged_into=memo.decision_id,
        )
        return decision, _remember(state, event.event_id, decision_id, policy, now)
    if verdict != PASS:
        decision = Decision(
            decision_id,
            event.event_id,
            event.customer_id,
            SUPPRESSED,
            last.rule,
            last.reason,
            trace,
            version,
            now,
        )
        return decision, _remember(state, event.event_id, decision_id, policy, now)

    action = approved_action(event, event.proposal, decision_id, version, now)
    decision = Decision(
        decision_id,
        event.event_id,
        event.customer_id,
        APPROVED,
        None,
        "every rule passed",
        trace,
        version,
        now,
        action=action,
    )
    return decision, _remember(
        _record_approval(state, event, event.proposal, decision_id, action.action_id, policy, now),
        event.event_id,
        decision_id,
        policy,
        now,
    )


def run_rules(ctx: RuleContext, rules: Iterable[Rule]) -> tuple[tuple[RuleStep, ...], str]:
    """Run rules in order until one does not pass; return the trace and the last verdict."""
    trace: list[RuleStep] = []
    for rule in rules:
        step = rule(ctx)
        trace.append(step)
        if step.verdict != PASS:
            return tuple(trace), step.verdict
    return tuple(trace), PASS


def approved_action(
    event: AgentEvent,
    p: Proposal,
    decision_id: str,
    version: str,
    now: int,
    merged: Sequence[AgentEvent] = (),
) -> ApprovedAction:
    return ApprovedAction(
        action_id=action_id_for(decision_id),
        decision_id=decision_id,
        customer_id=event.customer_id,
        channel=event.channel,
        action=p.action,
        category=p.category,
        content=p.content,
        offer_id=p.offer_id,
        offer_value=p.offer_value,
        conversation_id=event.conversation_id,
        asserts=p.asserts,
        source_event_ids=(event.event_id, *(m.event_id for m in merged)),
        agents=tuple(dict.fromkeys((event.agent, *(m.agent for m in merged)))),
        decided_at=now,
        not_before=None,
        policy_version=version,
    )


def _record_approval(
    state: CustomerState,
    event: AgentEvent,
    p: Proposal,
    decision_id: str,
    action_id: str,
    policy: Policy,
    now: int,
) -> CustomerState:
    contacts = state.contacts
    if p.action not in NON_CONTACT_ACTIONS:
        horizon = now - policy.longest_cap_window_ms
        contacts = (
            *(c for c in contacts if c.at > horizon),
            Contact(now, event.channel or "", p.category, event.department),
        )
    triggers = state.triggers
    if event.trigger is not None:
        horizon = now - policy.merge_window_ms
        triggers = {k: m for k, m in triggers.items() if m.at > horizon}
        triggers[event.trigger] = TriggerMemo(now, decision_id, action_id)
    return state.evolve(contacts=contacts, triggers=triggers)


def _remember(
    state: CustomerState, event_id: str, decision_id: str, policy: Policy, now: int
) -> CustomerState:
    """Add the event id to the bounded replay memory (oldest forgotten first)."""
    seen = dict(state.seen)
    seen[event_id] = decision_id
    while len(seen) > policy.replay_memory:
        del seen[next(iter(seen))]
    return state.evolve(seen=seen, events=state.events + 1)
