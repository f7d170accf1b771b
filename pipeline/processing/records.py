"""Turn decisions and rejected input into the output records' dict shape (see schemas/)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.contracts.events import AgentEvent, Source, event_to_dict
from pipeline.core.decision import Decision, decision_id_for


def audit_record(
    decision: Decision, event: AgentEvent, source: Source, processed_at: int
) -> dict[str, Any]:
    return {
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
        "input": orjson.dumps(event_to_dict(event)).decode(),
        "processed_at": processed_at,
        "experiments": [{"experiment": e, "arm": a} for e, a in decision.experiments],
    }


def dead_letter_record(
    reason: str,
    detail: str,
    key: bytes | None,
    value: bytes | None,
    source: Source,
    dead_lettered_at: int,
) -> dict[str, Any]:
    return {
        "reason": reason,
        "detail": detail,
        "raw_key": key,
        "raw_value": value or b"",
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
) -> dict[str, Any]:
    """The audit record of a policy change, so the audit trail shows when decisions changed.

    It reuses the decision schema: customer "-", the publisher as agent, one trace step per
    changed setting. The id depends on both versions, so re-publishing is idempotent.
    """
    event_id = f"policy:{new_version}"
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
        "reason": summary,
        "trace": [{"rule": "policy", "verdict": "change", "reason": c} for c in changes],
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
