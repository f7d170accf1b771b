"""Turn decisions and rejected input into the output records' dict shape (see schemas/)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.contracts import schemas
from pipeline.contracts.avro_writer import ONE_BYTE as _ONE_BYTE
from pipeline.contracts.avro_writer import avro_long, avro_opt_string, avro_string
from pipeline.contracts.events import AgentEvent, Source, event_to_dict
from pipeline.core.audit_minimisation import input_json, minimised_decision, minimised_raw
from pipeline.core.decision import Decision, RuleStep, decision_id_for
from pipeline.core.policy import AuditLevels
from pipeline.core.policy_governance import VerifiedApproval

FULL = AuditLevels()


def audit_record(
    decision: Decision,
    event: AgentEvent,
    source: Source,
    processed_at: int,
    levels: AuditLevels = FULL,
) -> dict[str, Any]:
    """The audit record of one decision, keeping of the input what the policy's `audit`
    levels allow (core/audit_minimisation.py); both runtimes write it from here."""
    record = {
        "decision_id": decision.decision_id,
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "kind": event.kind,
        "agent": event.agent,
        "department": event.department,
        "channel": event.channel,
        "trigger": event.trigger,
        "outcome": decision.outcome,
        "rule": decision.rule,
        "reason": decision.reason,
        "trace": [step.to_dict() for step in decision.trace],
        "policy_version": decision.policy_version,
        "action_id": decision.action_id,
        "merged_into": decision.merged_into,
        "decided_at": decision.decided_at,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "input": input_json(event, levels),
        "processed_at": processed_at,
        "experiments": [{"experiment": e, "arm": a} for e, a in decision.experiments],
    }
    return minimised_decision(record, levels) if levels.minimised else record


#: The audit record's fields in the order `audit_avro` writes them: the schema's.
AUDIT_FIELDS = (
    "decision_id",
    "event_id",
    "customer_id",
    "kind",
    "agent",
    "department",
    "channel",
    "trigger",
    "outcome",
    "rule",
    "reason",
    "trace",
    "policy_version",
    "action_id",
    "merged_into",
    "decided_at",
    "source_topic",
    "source_partition",
    "source_offset",
    "input",
    "processed_at",
    "experiments",
)
if tuple(f["name"] for f in schemas.get("audit_record").raw["fields"]) != AUDIT_FIELDS:
    raise RuntimeError("schemas/audit_record.avsc changed: update records.audit_avro with it")

#: Encodings remembered across records: the trace steps (mostly the rules' constant `pass`
#: lines, the same objects decision after decision) and the few-valued strings (kind, agent,
#: department, channel, outcome, rule, reason, policy version, topic). Each is emptied when full, so
#: customer-specific values cannot pile up.
_STEPS: dict[RuleStep, bytes] = {}
_TEXTS: dict[str, bytes] = {}
_OPT_TEXTS: dict[str | None, bytes] = {None: b"\x00"}
_REMEMBERED_MAX = 8192


def _step(step: RuleStep) -> bytes:
    encoded = avro_string(step.rule) + avro_string(step.verdict) + avro_string(step.reason)
    if len(_STEPS) >= _REMEMBERED_MAX:
        _STEPS.clear()
    _STEPS[step] = encoded
    return encoded


def _text(text: str) -> bytes:
    encoded = avro_string(text)
    if len(_TEXTS) >= _REMEMBERED_MAX:
        _TEXTS.clear()
    _TEXTS[text] = encoded
    return encoded


def _opt_text(text: str | None) -> bytes:
    encoded = avro_opt_string(text)
    if len(_OPT_TEXTS) >= _REMEMBERED_MAX:
        _OPT_TEXTS.clear()
        _OPT_TEXTS[None] = b"\x00"
    _OPT_TEXTS[text] = encoded
    return encoded


def audit_avro(decision: Decision, event: AgentEvent, source: Source, processed_at: int) -> bytes:
    """The Avro body of `audit_record(...)` at the full audit levels, written straight from
    the decision: the same bytes as encoding that dict, without building it (the audit
    record is written for every decision). `x or _remember(...)`: encodings are never empty.
    """
    t, ot = _TEXTS.get, _OPT_TEXTS.get
    trace = decision.trace
    arms = decision.experiments
    action = decision.action
    kind, agent, department = event.kind, event.agent, event.department
    channel, outcome, rule = event.channel, decision.outcome, decision.rule
    reason, version, topic = decision.reason, decision.policy_version, source.topic
    decision_id = decision.decision_id.encode()
    event_id = event.event_id.encode()
    customer_id = event.customer_id.encode()
    n = len(trace)
    if n:
        steps = _STEPS.get
        encoded_trace = b"".join(
            (
                _ONE_BYTE[n << 1] if n < 64 else avro_long(n),
                *[steps(x) or _step(x) for x in trace],
                b"\x00",
            )
        )
    else:
        encoded_trace = b"\x00"
    last = _LAST_STAMP
    stamp = last[1] if last[0] == processed_at else _stamp(processed_at)
    return b"".join(
        (
            _ONE_BYTE[n << 1] if (n := len(decision_id)) < 64 else avro_long(n),
            decision_id,
            _ONE_BYTE[n << 1] if (n := len(event_id)) < 64 else avro_long(n),
            event_id,
            _ONE_BYTE[n << 1] if (n := len(customer_id)) < 64 else avro_long(n),
            customer_id,
            t(kind) or _text(kind),
            t(agent) or _text(agent),
            t(department) or _text(department),
            ot(channel) or _opt_text(channel),
            avro_opt_string(event.trigger),
            t(outcome) or _text(outcome),
            ot(rule) or _opt_text(rule),
            t(reason) or _text(reason),
            encoded_trace,
            t(version) or _text(version),
            b"\x00" if action is None else b"\x02" + avro_string(action.action_id),
            avro_opt_string(decision.merged_into),
            avro_long(decision.decided_at),
            t(topic) or _text(topic),
            avro_long(source.partition),
            avro_long(source.offset),
            _json_string(orjson.dumps(event_to_dict(event))),
            stamp,
            b"".join((avro_long(len(arms)), *[avro_string(e) + avro_string(a) for e, a in arms]))
            + b"\x00"
            if arms
            else b"\x00",
        )
    )


#: (epoch ms, its encoding) of the last `processed_at`: the same for a whole batch
_LAST_STAMP: tuple[int, bytes] = (-1, b"\x01")


def _stamp(ms: int) -> bytes:
    global _LAST_STAMP
    encoded = avro_long(ms)
    _LAST_STAMP = (ms, encoded)
    return encoded


def _json_string(raw: bytes) -> bytes:
    """An Avro string of UTF-8 JSON already encoded (orjson's output)."""
    return avro_long(len(raw)) + raw


def dead_letter_record(
    reason: str,
    detail: str,
    key: bytes | None,
    value: bytes | None,
    source: Source,
    dead_lettered_at: int,
    levels: AuditLevels = FULL,
) -> dict[str, Any]:
    """The dead letter of a raw record, minimised like the audit (`minimised_raw`)."""
    raw, detail = minimised_raw(value or b"", detail, levels)
    return {
        "reason": reason,
        "detail": detail,
        "raw_key": key,
        "raw_value": raw,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "source_timestamp": source.timestamp_ms,
        "dead_lettered_at": dead_lettered_at,
    }


def policy_change_record(
    summary: str,
    changes: list[str],
    old_version: str,
    new_version: str,
    published_by: str,
    published_at: int,
    source: Source,
    record_json: str,
    proposed_by: str | None = None,
) -> dict[str, Any]:
    """The audit record of a policy change, so the audit trail shows when decisions changed.

    It reuses the decision schema: customer "-", the publisher as agent, one trace step per
    changed setting. The id depends on both versions, so re-publishing is idempotent. A
    four-eyes change (`proposed_by` set) has the approver as agent, and names both people
    in the reason and in two leading `governance` trace steps.
    """
    event_id = f"policy:{new_version}"
    trace = [{"rule": "policy", "verdict": "change", "reason": c} for c in changes]
    reason = summary
    if proposed_by is not None:
        trace = [
            {"rule": "governance", "verdict": "propose", "reason": f"proposed by {proposed_by}"},
            {"rule": "governance", "verdict": "approve", "reason": f"approved by {published_by}"},
            *trace,
        ]
        reason = f"{summary} [proposed by {proposed_by}, approved by {published_by}]"
    return {
        "decision_id": decision_id_for("-", f"{event_id}<-{old_version}"),
        "event_id": event_id,
        "customer_id": "-",
        "kind": "policy",
        "agent": published_by,
        "department": "operations",
        "channel": None,
        "trigger": None,
        "outcome": "policy_changed",
        "rule": None,
        "reason": reason,
        "trace": trace,
        "policy_version": new_version,
        "action_id": None,
        "merged_into": None,
        "decided_at": published_at,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "input": record_json,
        "processed_at": published_at,
        "experiments": [],
    }


def policy_review_record(
    outcome: str,
    policy_version: str,
    proposed_by: str,
    by: str,
    at: int,
    reason: str,
    changes: list[str],
    source: Source,
    record_json: str,
) -> dict[str, Any]:
    """The audit record of a step that changes no decision yet: `policy_proposed` (by the
    proposer) or `policy_rejected` (by whoever rejected it).

    Same shape as `policy_change_record`: `by` is the agent, both people are in the reason
    and the `governance` trace steps, `policy_version` is the proposed version (the policy
    in force is unchanged), and the trace lists what the proposal would change.
    """
    verdict = {"policy_proposed": "propose", "policy_rejected": "reject"}[outcome]
    steps = [{"rule": "governance", "verdict": "propose", "reason": f"proposed by {proposed_by}"}]
    if verdict == "reject":
        steps.append({"rule": "governance", "verdict": "reject", "reason": f"rejected by {by}"})
    event_id = f"policy:{policy_version}"
    return {
        "decision_id": decision_id_for("-", f"{event_id}/{verdict}@{at}"),
        "event_id": event_id,
        "customer_id": "-",
        "kind": "policy",
        "agent": by,
        "department": "operations",
        "channel": None,
        "trigger": None,
        "outcome": outcome,
        "rule": None,
        "reason": reason,
        "trace": [
            *steps,
            *({"rule": "policy", "verdict": "change", "reason": c} for c in changes),
        ],
        "policy_version": policy_version,
        "action_id": None,
        "merged_into": None,
        "decided_at": at,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "input": record_json,
        "processed_at": at,
        "experiments": [],
    }


def policy_applied_record(
    approval: VerifiedApproval | None,
    old_version: str,
    new_version: str,
    worker: str,
    at: int,
    source: Source,
    record_json: str,
    published_by: str = "",
) -> dict[str, Any]:
    """The audit record a worker writes when it puts a policy change in force.

    Written by the worker that applied the change, not by whoever ran the CLI (on a secured
    cluster only the workers may write the audit): the agent is the worker, the trace names
    each signer of a four-eyes change with the fingerprint of the key that verified (else
    the publisher's unverified name), and `input` is the `policies` record, so an auditor
    can verify it again against the approvers file. A `policy_changed` record without a
    matching `policy_applied` never came into force.
    """
    event_id = f"policy:{new_version}"
    if approval is None:
        signers = [{"rule": "governance", "verdict": "published", "reason": published_by}]
        how = f"published by {published_by or '?'} without four-eyes approval"
    else:
        signers = [
            {"rule": "governance", "verdict": verdict, "reason": f"{who.name} {who.key}"}
            for verdict, who in (("propose", approval.proposer), ("approve", approval.approver))
        ]
        how = f"signatures verified: {approval.describe()}"
    return {
        "decision_id": decision_id_for("-", f"{event_id}<-{old_version}@{worker}"),
        "event_id": event_id,
        "customer_id": "-",
        "kind": "policy",
        "agent": worker,
        "department": "operations",
        "channel": None,
        "trigger": None,
        "outcome": "policy_applied",
        "rule": None,
        "reason": f"policy {old_version} -> {new_version} in force on {worker}; {how}",
        "trace": signers,
        "policy_version": new_version,
        "action_id": None,
        "merged_into": None,
        "decided_at": at,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "input": record_json,
        "processed_at": at,
        "experiments": [],
    }
