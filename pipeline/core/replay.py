"""Replay: re-run the pure core over recorded audit inputs and compare with what was recorded.

A decision depends on every earlier decision about the same customer, so the state is
rebuilt from an empty one over the customer's whole audit history, in decision order,
duplicates and merges included. No I/O: the caller reads the audit topic and says how a
`policy_version` becomes a `Policy`.

A record whose input the policy did not keep in full (core/audit_minimisation.py) cannot
always be re-decided exactly. With `audit.input: none` there is no input: the record, and
every later one of that customer (whose state depends on it), is `not-kept` rather than a
mismatch. A redacted or hashed input is replayed, and the recomputed reason and trace are
minimised the same way before comparing: a match is a match, but a difference on a record
whose input minimisation changed (a PII marker or a hashed content; or on a later record of
that customer, whose state was rebuilt from it) may come from the missing text, so it is
`unverifiable`, not a mismatch. A record minimisation left unchanged is checked as usual.
Neither status says the record is wrong; only a mismatch does.

A worker restarted after a crash may re-decide records it had already decided (at-least-once).
Such a re-emission has the source position of an earlier audit record; it is checked against
both things the worker could have done (re-decide from the state before the first decision,
or find the event already in a state that had been saved) and does not advance the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson

from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.arbitration import decide, release
from pipeline.core.audit_minimisation import changed_by_minimisation, minimised_decision
from pipeline.core.decision import DUPLICATE, HELD, Decision
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.state import EMPTY_STATE, CustomerState

MATCH: Final = "match"
MISMATCH: Final = "mismatch"
#: the record's policy version is not known to the resolver
UNRESOLVED: Final = "unresolved"
#: the input does not decode, or an earlier decision of the customer could not be replayed
#: (the state it left behind is unknown, so nothing after it can be checked)
UNREPLAYABLE: Final = "unreplayable"
#: the policy kept no input (`audit.input: none`), for this record or an earlier one of the
#: customer: it cannot be re-decided
NOT_KEPT: Final = "not-kept"
#: replay differs, but the input (this one or an earlier one) was redacted or hashed, so the
#: difference may come from the text that was not kept
UNVERIFIABLE: Final = "unverifiable"
#: statuses that are no fault of the record or the core: the policy chose not to keep enough
NOT_RECHECKABLE: Final = (NOT_KEPT, UNVERIFIABLE)

#: What must be identical between the recorded and the recomputed decision.
COMPARED: Final = (
    "outcome",
    "rule",
    "reason",
    "trace",
    "action_id",
    "merged_into",
    "policy_version",
    "experiments",
)

PolicyResolver = Callable[[str], Policy | None]


@dataclass(frozen=True, slots=True)
class Replayed:
    """The verdict on one audit record; `recomputed` is None when it could not be recomputed."""

    decision_id: str
    event_id: str
    customer_id: str
    status: str
    detail: str
    recorded: Mapping[str, Any]
    recomputed: Mapping[str, Any] | None = None
    differences: tuple[str, ...] = ()
    reemitted: bool = False
    #: for not-kept and unverifiable: the audit levels that kept too little, as in the policy
    audit_levels: str = ""

    @property
    def policy_version(self) -> str:
        return str(self.recorded.get("policy_version", ""))


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    replayed: int
    matched: int
    mismatched: int
    unresolved: int
    unreplayable: int
    unresolved_versions: tuple[str, ...]
    not_kept: int = 0
    unverifiable: int = 0
    #: distinct audit levels behind the not-kept and the unverifiable results
    not_kept_levels: tuple[str, ...] = ()
    unverifiable_levels: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing contradicts the record (unresolved policies are a gap, not a contradiction)."""
        return self.mismatched == 0


def catalog(policies: Iterable[Policy]) -> PolicyResolver:
    """Resolve versions among `policies` plus the built-in default; later ones win a tie."""
    known = {DEFAULT_POLICY.policy_version: DEFAULT_POLICY}
    known.update({p.policy_version: p for p in policies})
    return known.get


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The compared fields of an audit record, traces as plain dicts."""
    out = {name: record.get(name) for name in COMPARED}
    out["trace"] = [
        {"rule": s.get("rule"), "verdict": s.get("verdict"), "reason": s.get("reason")}
        for s in record.get("trace") or ()
    ]
    out["experiments"] = [
        {"experiment": x.get("experiment"), "arm": x.get("arm")}
        for x in record.get("experiments") or ()
    ]
    return out


def decision_fields(decision: Decision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "trace": [step.to_dict() for step in decision.trace],
        "action_id": decision.action_id,
        "merged_into": decision.merged_into,
        "policy_version": decision.policy_version,
        "experiments": [{"experiment": e, "arm": a} for e, a in decision.experiments],
    }


def differences(recorded: Mapping[str, Any], recomputed: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(name for name in COMPARED if recorded.get(name) != recomputed.get(name))


def _position(record: Mapping[str, Any]) -> tuple[Any, Any, Any, Any] | None:
    """What identifies a decision's input: one record can release a hold and be decided
    itself (or wake several held proposals), so the event id is part of it."""
    pos = (
        record.get("source_topic"),
        record.get("source_partition"),
        record.get("source_offset"),
        record.get("event_id"),
    )
    return None if pos[2] is None else pos


def replay_customer(
    records: Iterable[Mapping[str, Any]], resolve: PolicyResolver
) -> list[Replayed]:
    """Replay one customer's audit records, given in decision order (audit topic order)."""
    state: CustomerState = EMPTY_STATE
    first_seen: dict[tuple[Any, Any, Any, Any], dict[str, Any]] = {}
    #: why the rebuilt state can no longer be trusted: (status, detail, audit levels)
    broken: tuple[str, str, str] | None = None
    #: the levels of the first minimised input the rebuilt state stems from
    minimised: str | None = None
    released: dict[str, Decision] = {}  # final decisions of a released hold, not yet met
    out: list[Replayed] = []
    for record in records:
        recorded = comparable(record)
        result = partial(_result, record, recorded)
        if broken is not None:
            status, detail, levels_text = broken
            out.append(result(status, detail, audit_levels=levels_text))
            continue
        version = str(record.get("policy_version"))
        policy = resolve(version)
        if policy is None:
            out.append(result(UNRESOLVED, f"policy version {version} is not known"))
            broken = (
                UNREPLAYABLE,
                f"follows {record.get('decision_id')}, whose policy {version} is not known",
                "",
            )
            continue
        levels = policy.audit
        if levels.input == "none":
            kept = levels.describe()
            out.append(result(NOT_KEPT, f"input not kept ({kept})", audit_levels=kept))
            broken = (
                NOT_KEPT,
                f"follows {record.get('decision_id')}, whose input was not kept ({kept})",
                kept,
            )
            continue
        try:
            event = _event(record)
        except InvalidEvent as exc:
            out.append(result(UNREPLAYABLE, f"recorded input does not decode: {exc}"))
            broken = (
                UNREPLAYABLE,
                f"follows {record.get('decision_id')}, whose input does not decode",
                "",
            )
            continue
        why: tuple[str, str] | None = None  # what may explain a difference, and the levels
        if changed_by_minimisation(event, levels):
            kept = levels.describe()
            why = (f"the input was minimised ({kept})", kept)
            minimised = minimised or kept
        elif minimised is not None:
            why = (f"the state was rebuilt from minimised inputs ({minimised})", minimised)
        now = int(record.get("decided_at") or event.occurred_at)
        # a copy of a held event sent again before the hold closed is audited as a
        # duplicate (decide's first check) and does not release it
        final = record.get("outcome") not in (HELD, DUPLICATE)
        hold_id = _held_in(state, event.event_id) if final else None
        if hold_id is not None:
            # the first final record of a released hold: release it as the worker did
            decisions, state = release(state, event.customer_id, hold_id, policy)
            released.update((d.event_id, d) for d in decisions)
        if event.event_id in released:
            decision, next_state = released.pop(event.event_id), state
        else:
            decision, next_state = decide(state, event, policy, now)
        fresh = minimised_decision(decision_fields(decision), levels)
        pos = _position(record)
        earlier = first_seen.get(pos) if pos is not None else None
        if earlier is None:
            if pos is not None:
                first_seen[pos] = fresh
            state = next_state
            out.append(_compared(result, recorded, fresh, reemitted=False, minimised=why))
            continue
        # a re-emission: the state already holds this event; either answer is legitimate,
        # and a wrong one is shown against the decision it repeats
        if not differences(recorded, fresh):
            out.append(result(MATCH, "", fresh, reemitted=True))
        else:
            out.append(_compared(result, recorded, earlier, reemitted=True, minimised=why))
    return out


def _result(
    record: Mapping[str, Any],
    recorded: dict[str, Any],
    status: str,
    detail: str,
    recomputed: dict[str, Any] | None = None,
    **kw: Any,
) -> Replayed:
    return Replayed(
        str(record.get("decision_id")),
        str(record.get("event_id")),
        str(record.get("customer_id")),
        status,
        detail,
        recorded,
        recomputed,
        **kw,
    )


def _compared(
    result: Callable[..., Replayed],
    recorded: dict[str, Any],
    recomputed: dict[str, Any],
    *,
    reemitted: bool,
    minimised: tuple[str, str] | None = None,
) -> Replayed:
    """Match or mismatch; a difference that minimisation may explain is `unverifiable`."""
    diff = differences(recorded, recomputed)
    if not diff:
        return result(MATCH, "", recomputed, reemitted=reemitted)
    detail = "differs in " + ", ".join(diff)
    if minimised is not None:
        why, levels_text = minimised
        return result(
            UNVERIFIABLE,
            f"{detail}, but {why}: cannot tell",
            recomputed,
            differences=diff,
            reemitted=reemitted,
            audit_levels=levels_text,
        )
    return result(MISMATCH, detail, recomputed, differences=diff, reemitted=reemitted)


def _held_in(state: CustomerState, event_id: str) -> str | None:
    """The hold that parks `event_id`, if any."""
    for hold_id, hold in state.holds.items():
        if any(orjson.loads(item)["event_id"] == event_id for item in hold.items):
            return hold_id
    return None


def _event(record: Mapping[str, Any]) -> AgentEvent:
    raw = str(record.get("input") or "").encode()
    return decode_event(str(record.get("customer_id")).encode(), raw, max_bytes=max(len(raw), 1))


#: audit record kinds that are no decision about a customer's event: a policy change, and
#: what a person did in the console
NOT_DECISIONS: Final = frozenset({"policy", "console"})


def replay_all(records: Iterable[Mapping[str, Any]], resolve: PolicyResolver) -> list[Replayed]:
    """Replay many customers' records; each customer's relative order must be decision order."""
    by_customer: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("kind") in NOT_DECISIONS:
            continue  # a policy change or a console action, not a decision about a customer
        by_customer.setdefault(str(record.get("customer_id")), []).append(record)
    out: list[Replayed] = []
    for history in by_customer.values():
        out.extend(replay_customer(history, resolve))
    return out


def summarize(results: Sequence[Replayed]) -> ReplaySummary:
    count = {s: 0 for s in (MATCH, MISMATCH, UNRESOLVED, UNREPLAYABLE, *NOT_RECHECKABLE)}
    versions: set[str] = set()
    levels: dict[str, set[str]] = {s: set() for s in NOT_RECHECKABLE}
    for r in results:
        count[r.status] += 1
        if r.status == UNRESOLVED:
            versions.add(r.policy_version)
        elif r.status in levels and r.audit_levels:
            levels[r.status].add(r.audit_levels)
    return ReplaySummary(
        replayed=len(results),
        matched=count[MATCH],
        mismatched=count[MISMATCH],
        unresolved=count[UNRESOLVED],
        unreplayable=count[UNREPLAYABLE],
        unresolved_versions=tuple(sorted(versions)),
        not_kept=count[NOT_KEPT],
        unverifiable=count[UNVERIFIABLE],
        not_kept_levels=tuple(sorted(levels[NOT_KEPT])),
        unverifiable_levels=tuple(sorted(levels[UNVERIFIABLE])),
    )
