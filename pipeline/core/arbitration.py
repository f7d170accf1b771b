"""`decide(state, event, policy, now) -> (Decision, CustomerState)`: the pure decision core.

No I/O, no clock: `now` is event time, supplied by the caller, so the audit log plus the
policy version replays every decision exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from pipeline.contracts.events import AgentEvent, Proposal
from pipeline.core import experiments, hold_windows
from pipeline.core.decision import (
    APPROVED,
    BLOCK,
    DEFER,
    DEFERRED,
    DUPLICATE,
    ESCALATE,
    ESCALATED,
    MERGE,
    MERGED,
    PASS,
    RECORD,
    RECORDED,
    SUPPRESSED,
    WITHHELD,
    ApprovedAction,
    Decision,
    RuleStep,
    action_id_for,
    decision_id_for,
)
from pipeline.core.policy import Policy
from pipeline.core.rules import (
    Rule,
    RuleContext,
    consistency_ledger,
    duplicate_merge,
    escalation,
    offer_arbitration,
    quiet_hours,
    transforms,
)
from pipeline.core.rules.registry import CHAIN_CHECKS
from pipeline.core.signals import apply_signal
from pipeline.core.state import ActiveOffer, Contact, CustomerState, TriggerMemo, digest_of

#: The proposal chain, in the order and for the reasons given in rules/registry.py. The
#: trace lists the rules in this order.
PROPOSAL_RULES: tuple[Rule, ...] = CHAIN_CHECKS

REPLAY = "replay"
FIRST_SEEN = RuleStep(REPLAY, PASS, "first time this event id is seen")
#: Approved actions of these kinds are not customer contacts (they move work, not messages).
NON_CONTACT_ACTIONS = frozenset({"route_case"})


def decide(
    state: CustomerState, event: AgentEvent, policy: Policy, now: int
) -> tuple[Decision, CustomerState]:
    decision_id = decision_id_for(event.customer_id, event.event_id)
    version = policy.policy_version
    digest = digest_of(event.event_id)  # computed once: checked, then remembered

    if state.seen.holds(digest):
        step = RuleStep(
            REPLAY, DUPLICATE, f"event {event.event_id} already decided as {decision_id}"
        )
        decision = Decision.for_event(
            event, decision_id, version, now, DUPLICATE, REPLAY, step.reason, (step,)
        )
        return decision, state
    replay_step = FIRST_SEEN

    if event.proposal is None:
        new_state = apply_signal(state, event, policy)
        step = RuleStep(
            "signal", RECORD, f"{event.signal.type if event.signal else 'signal'} recorded"
        )
        decision = Decision.for_event(
            event, decision_id, version, now, RECORDED, None, step.reason, (replay_step, step)
        )
        return decision, _remember(new_state, digest, policy)

    if (
        event.trigger is not None
        and policy.holds.hold_ms.get(event.proposal.action, 0) > 0
        and duplicate_merge.check(RuleContext(event, event.proposal, state, policy, now)).verdict
        == PASS
    ):
        # A latecomer for a trigger already answered is merged at once, not held again.
        decision, changes = hold_windows.park(state, event, policy, now, decision_id)
        return decision, _remember(state, digest, policy, **changes)

    decision, changes = decide_proposal(state, event, policy, now, decision_id)
    return decision, _remember(state, digest, policy, **changes)


def decide_proposal(
    state: CustomerState,
    event: AgentEvent,
    policy: Policy,
    now: int,
    decision_id: str,
    merged: Sequence[AgentEvent] = (),
) -> tuple[Decision, dict[str, Any]]:
    """Run the rule chain on one proposal; return the decision and the state changes.

    `merged` are held competitors that lost to this one: an approved action lists them.
    """
    assert event.proposal is not None
    version = policy.policy_version
    ctx = RuleContext(event, event.proposal, state, policy, now)
    trace, verdict = run_rules(ctx, PROPOSAL_RULES)
    trace = (FIRST_SEEN, *trace)
    last = trace[-1]
    if verdict == MERGE:
        memo = state.triggers[event.trigger or ""]
        decision = Decision.for_event(
            event,
            decision_id,
            version,
            now,
            MERGED,
            last.rule,
            last.reason,
            trace,
            merged_into=memo.decision_id,
        )
        return decision, {}
    if verdict == ESCALATE:
        return _escalate(ctx, trace, decision_id, merged)
    transformed = transforms.apply(ctx) if verdict in (PASS, DEFER) else transforms.UNCHANGED
    if transformed.steps:
        trace = (*trace, *transformed.steps)
    if transformed.blocked is not None:
        trace, verdict, last = (*trace, transformed.blocked), BLOCK, transformed.blocked
    if verdict not in (PASS, DEFER):
        decision = Decision.for_event(
            event, decision_id, version, now, SUPPRESSED, last.rule, last.reason, trace
        )
        return decision, {}

    assignment = experiments.assign(event, event.proposal, policy)
    if assignment.arms:
        trace = (*trace, assignment.step)
        changes: dict[str, Any] = {
            "exposures": experiments.expose(state.exposures, assignment.arms, now)
        }
    else:
        changes = {}
    if assignment.withheld is not None:
        step = assignment.withheld
        decision = Decision.for_event(
            event,
            decision_id,
            version,
            now,
            WITHHELD,
            step.rule,
            step.reason,
            trace,
            experiments=assignment.arms,
        )
        return decision, changes

    not_before = quiet_hours.not_before(ctx) if verdict == DEFER else None
    action = approved_action(
        event,
        event.proposal,
        decision_id,
        version,
        now,
        merged,
        not_before=not_before,
        content=transformed.content,
    )
    deferred = not_before is not None
    decision = Decision.for_event(
        event,
        decision_id,
        version,
        now,
        DEFERRED if deferred else APPROVED,
        quiet_hours.NAME if deferred else None,
        f"deferred until {not_before}" if deferred else "every rule passed",
        trace,
        action=action,
        experiments=assignment.arms,
    )
    changes.update(
        _approval_changes(state, event, event.proposal, decision_id, action.action_id, policy, now)
    )
    if transformed.disclosed is not None:
        changes["disclosed"] = transforms.remember(state.disclosed, transformed.disclosed, now)
    return decision, changes


def _escalate(
    ctx: RuleContext, trace: tuple[RuleStep, ...], decision_id: str, merged: Sequence[AgentEvent]
) -> tuple[Decision, dict[str, Any]]:
    """An escalated proposal goes out as a route_case to the policy's human queue instead.

    The escalation rule also marks the handoff as routed, so later AI answers are suppressed
    until case_resolved; a consistency escalation changes no state.
    """
    event, p, state, policy, now = ctx.event, ctx.proposal, ctx.state, ctx.policy, ctx.now
    last = trace[-1]
    routed = replace(
        p,
        action="route_case",
        content=escalation.route_content(last.reason, policy.escalation.queue),
        offer_id=None,
        offer_value=None,
        asserts={},
    )
    action = approved_action(event, routed, decision_id, policy.policy_version, now, merged)
    decision = Decision.for_event(
        event,
        decision_id,
        policy.policy_version,
        now,
        ESCALATED,
        last.rule,
        last.reason,
        trace,
        action=action,
    )
    changes: dict[str, Any] = {}
    if last.rule == escalation.NAME and state.handoff is not None:
        changes["handoff"] = state.handoff._replace(action_id=action.action_id)
    return decision, changes


def release(
    state: CustomerState, customer_id: str, hold_id: str, policy: Policy
) -> tuple[list[Decision], CustomerState]:
    """Close a hold at its deadline: the best proposal that passes the rules goes out, listing
    the others, which are merged into it. Releasing an unknown hold (already released before
    a crash, or a duplicate wake-up) changes nothing.
    """
    hold = state.holds.get(hold_id)
    if hold is None:
        return [], state
    now = hold.deadline
    holds = {k: h for k, h in state.holds.items() if k != hold_id}
    state = state.evolve(holds=holds)
    candidates = hold_windows.ranked(hold_windows.held_events(customer_id, hold), policy)
    decisions: list[Decision] = []
    winner: Decision | None = None
    for i, event in enumerate(candidates):
        decision_id = decision_id_for(customer_id, event.event_id)
        if winner is None:
            decision, changes = decide_proposal(
                state, event, policy, now, decision_id, merged=candidates[i + 1 :]
            )
            if decision.action is not None:
                winner = decision
            state = state.evolve(**changes)
        else:
            reason = (
                f"{hold_id}: {winner.event_id} ranked higher and went out as {winner.action_id}"
            )
            step = RuleStep(hold_windows.NAME, MERGE, reason)
            decision = Decision.for_event(
                event,
                decision_id,
                policy.policy_version,
                now,
                MERGED,
                hold_windows.NAME,
                reason,
                (FIRST_SEEN, step),
                merged_into=winner.decision_id,
            )
        decisions.append(decision)
    return decisions, state


def run_rules(ctx: RuleContext, rules: Iterable[Rule]) -> tuple[tuple[RuleStep, ...], str]:
    """Run rules in order until one blocks or merges; return the trace and the verdict.

    The verdict is PASS, DEFER (some rule deferred and none blocked later) or the stopping
    rule's verdict, which is then the last step of the trace.
    """
    trace: list[RuleStep] = []
    verdict = PASS
    for rule in rules:
        step = rule(ctx)
        if step is None:
            continue
        trace.append(step)
        if step.verdict == DEFER:
            verdict = DEFER
        elif step.verdict != PASS:
            return tuple(trace), step.verdict
    return tuple(trace), verdict


def approved_action(
    event: AgentEvent,
    p: Proposal,
    decision_id: str,
    version: str,
    now: int,
    merged: Sequence[AgentEvent] = (),
    *,
    not_before: int | None = None,
    content: str | None = None,
) -> ApprovedAction:
    """The action a channel receives; `content` (the transformed text) replaces the
    proposal's when given."""
    return ApprovedAction(
        action_id=action_id_for(decision_id),
        decision_id=decision_id,
        customer_id=event.customer_id,
        channel=event.channel,
        action=p.action,
        category=p.category,
        content=p.content if content is None else content,
        offer_id=p.offer_id,
        offer_value=p.offer_value,
        conversation_id=event.conversation_id,
        asserts=p.asserts,
        source_event_ids=(event.event_id, *(m.event_id for m in merged)),
        agents=tuple(dict.fromkeys((event.agent, *(m.agent for m in merged)))),
        decided_at=now,
        not_before=not_before,
        policy_version=version,
    )


def _approval_changes(
    state: CustomerState,
    event: AgentEvent,
    p: Proposal,
    decision_id: str,
    action_id: str,
    policy: Policy,
    now: int,
) -> dict[str, Any]:
    """What an approved (or deferred) action adds to the state: contact, trigger, facts, offer."""
    # A deferred action counts as a contact (and holds its offer) from the moment it was
    # decided, so nothing else slips past the caps while it waits for the morning.
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
    facts = consistency_ledger.record(state.facts, p.asserts, event.agent, policy, now)
    offer = state.offer
    if policy.offers.window_ms > 0 and offer_arbitration.is_offer(p):
        score = offer_arbitration.score(p, policy.offers)
        offer = ActiveOffer(now, p.offer_id or "", event.agent, score, decision_id)
    return {"contacts": contacts, "triggers": triggers, "facts": facts, "offer": offer}


def _remember(state: CustomerState, digest: str, policy: Policy, **changes: Any) -> CustomerState:
    """Add the event id (its `digest_of`) to the bounded replay memory, oldest forgotten
    first.

    Takes the decision's other state changes too, so each decision builds one new state.
    """
    seen = state.seen.add(digest, policy.replay_memory)
    return state.evolve(seen=seen, events=state.events + 1, **changes)
