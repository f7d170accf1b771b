"""What people do in the console, on the audit topic: one `console_action` record per
action (approve, reject, propose, kill switch, rollback), done or refused, and per look at
a customer's page (personal data read by a person).

They are told apart from the governance records by their kind, `console`: the policy code
writes `policy_proposed`, `policy_changed` and `policy_rejected` (kind `policy`), each
worker `policy_applied` when it puts a change in force. A console action names the person
(from the signed-in token, never a form field) as its agent, the action as its trigger,
the result in its reason and trace, and the request as JSON in its input. The policy
records on the `policies` topic name the proposer and approver as before.

Writing it must not undo the action: a record the broker refuses is logged and said in
the answer, and the action stands (the policy records and the workers' `policy_applied`
still tell what changed).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException, Producer

from pipeline.contracts.codec import encode_record
from pipeline.core.decision import decision_id_for
from pipeline.kafka import clients
from pipeline.kafka.schema_registry import RegistryClient, register_outputs
from pipeline.settings import Settings

log = logging.getLogger(__name__)

KIND = "console"
OUTCOME = "console_action"
#: the audit record's source: the console, not a topic it read
SOURCE_TOPIC = "console"
VIEW_CUSTOMER = "view_customer"


@dataclass(frozen=True)
class ConsoleAction:
    """One thing a person did in the console."""

    action: str  # approve | reject | propose | kill_switch | rollback | view_customer
    by: str
    role: str
    done: bool
    message: str
    request: Mapping[str, Any]
    policy_in_force: str
    at: int


def action_record(a: ConsoleAction) -> dict[str, Any]:
    """The audit record of a console action, in the audit topic's shape."""
    event_id = f"console:{uuid.uuid4().hex}"
    result = "done" if a.done else "refused"
    return {
        "decision_id": decision_id_for("-", f"{event_id}/{a.action}@{a.at}"),
        "event_id": event_id,
        "customer_id": "-",
        "kind": KIND,
        "agent": a.by,
        "department": "operations",
        "channel": None,
        "trigger": a.action,
        "outcome": OUTCOME,
        "rule": None,
        "reason": f"{a.by} ({a.role}) {a.action.replace('_', ' ')}: {result}: {a.message}",
        "trace": [{"rule": "console", "verdict": result, "reason": a.message}],
        "policy_version": a.policy_in_force,
        "action_id": None,
        "merged_into": None,
        "decided_at": a.at,
        "source_topic": SOURCE_TOPIC,
        "source_partition": 0,
        "source_offset": 0,
        "input": orjson.dumps(
            {
                "action": a.action,
                "by": a.by,
                "role": a.role,
                "result": result,
                "request": dict(a.request),
            },
            option=orjson.OPT_SORT_KEYS,
        ).decode(),
        "processed_at": a.at,
        "experiments": [],
    }


def now_ms() -> int:
    return int(time.time() * 1000)


class ActionLog(Protocol):
    """Where console actions go; `record` returns None, or why the record was not written."""

    def record(self, action: ConsoleAction) -> str | None: ...


class TopicActionLog:
    """Console actions onto the audit topic (acks=all, waited for)."""

    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._producer: Producer | None = None
        self._schema_id: int | None = None

    def record(self, action: ConsoleAction) -> str | None:
        try:
            value = self._encode(action_record(action))
            producer = self._producer or clients.producer(self.settings, acks="all")
            self._producer = producer
            errors: list[str] = []

            def delivered(err: Any, _msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))

            producer.produce(
                self.settings.topics.audit, key=b"-", value=value, on_delivery=delivered
            )
            left = producer.flush(self.timeout)
            if left:
                errors.append(f"not delivered within {self.timeout:g} s")
        except (KafkaException, BufferError, ValueError, OSError) as exc:
            errors = [str(exc)]
        if not errors:
            return None
        why = (
            f"the console_action audit record was not written to {self.settings.topics.audit!r}: "
            f"{errors[0]} (the console's credentials need write access to it)"
        )
        log.error("%s", why)
        return why

    def _encode(self, record: dict[str, Any]) -> bytes:
        if self.settings.output_format == "registry-avro" and self._schema_id is None:
            self._schema_id = register_outputs(RegistryClient(self.settings), self.settings)[
                "audit_record"
            ]
        return encode_record("audit_record", record, self.settings.output_format, self._schema_id)
