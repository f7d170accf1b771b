"""Reading and writing the compacted policies topic, the way workers read it.

See `pipeline.contracts.policy_record` for the wire format. Every worker's `PolicyFollower`
picks up what is written here between two batches; each write is audited in the audit topic.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import click
from confluent_kafka import Producer

from pipeline.contracts.codec import encode_record
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    PENDING_PREFIX,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import PolicyError, load_policy_file
from pipeline.kafka.policy_follower import (
    PolicyMismatch,
    PolicyUnapproved,
    active_policy_from_record,
    load_approvers,
)
from pipeline.kafka.reader import ScanError, read_range, scan_consumer, watermarks
from pipeline.kafka.schema_registry import RegistryClient, register_outputs
from pipeline.kafka.topics import list_topics
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    record: PolicyRecord
    policy: Policy


@dataclass(frozen=True, slots=True)
class PolicyTopic:
    """What the policies topic holds now: the policy in force and the open proposals."""

    active: ActivePolicy | None
    #: open proposals by policy_version, oldest first
    pending: dict[str, PolicyRecord]
    #: what workers run while the topic has no `active` record: TOWER_POLICY_FILE, else the
    #: built-in default
    fallback: Policy = DEFAULT_POLICY

    @property
    def in_force(self) -> Policy:
        return self.active.policy if self.active else self.fallback


def read_policies(settings: Settings, timeout: float = 10.0) -> PolicyTopic:
    """Read the policies topic to its end the way workers do: the last `active` record they
    would accept (valid, and approved where approval is required), plus open proposals."""
    topic = settings.topics.policies
    if topic not in list_topics(settings, timeout):
        raise PolicyCommandError(
            f"topic {topic!r} does not exist on {settings.bootstrap}: run `tower topics create`"
        )
    active: ActivePolicy | None = None
    pending: dict[str, PolicyRecord] = {}
    approvers = load_approvers(settings.policy_approvers_file)
    # a worker judges the first `active` record against the policy it started with
    fallback = load_policy_file(settings.policy_file) if settings.policy_file else DEFAULT_POLICY
    consumer = scan_consumer(settings, "policy-cli", timeout)
    try:
        low, end = watermarks(consumer, topic, 0, timeout)
        for msg in read_range(consumer, topic, 0, low, end, timeout):
            key = msg.key()
            if key == ACTIVE_KEY:
                try:
                    record = decode_policy_record(msg.value())
                    in_force = active.policy if active else fallback
                    policy = active_policy_from_record(
                        record, in_force, settings.policy_require_approval, approvers
                    )
                    active = ActivePolicy(record, policy)
                except (InvalidPolicyRecord, PolicyError, PolicyMismatch, PolicyUnapproved):
                    pass  # workers ignore it too
            elif key is not None and key.startswith(PENDING_PREFIX):
                version = key[len(PENDING_PREFIX) :].decode(errors="replace")
                pending.pop(version, None)  # a tombstone closes it; a new value reorders it
                if msg.value():
                    with suppress(InvalidPolicyRecord):  # not something anyone can approve
                        pending[version] = decode_policy_record(msg.value())
    except ScanError as exc:
        raise PolicyCommandError(f"could not read {topic!r} to its end: {exc}") from None
    finally:
        consumer.close()
    return PolicyTopic(active, pending, fallback)


def read_active(settings: Settings, timeout: float = 10.0) -> ActivePolicy | None:
    """The policy workers have in force: the last *valid* `active` record, like they do."""
    return read_policies(settings, timeout).active


def produce_records(
    producer: Producer,
    topic: str,
    records: list[tuple[bytes, bytes | None]],
    timeout: float,
    what: str,
) -> dict[bytes, int]:
    """Produce `records` in order (acks=all) and wait; the offset of each key."""
    offsets: dict[bytes, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            offsets[msg.key()] = msg.offset()

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    _flush(producer, errors, timeout, what)
    return offsets


#: the error code of a write the cluster's ACLs refused
AUDIT_REFUSED = "TOPIC_AUTHORIZATION_FAILED"


def write_audit(
    producer: Producer, settings: Settings, audit: dict[str, Any], timeout: float, what: str
) -> None:
    """Write the command's own audit record. On a secured cluster only the workers may write
    the audit: a refusal is said, not raised, since each worker audits the change it puts in
    force (`policy_applied`)."""
    schema_id = None
    if settings.output_format == "registry-avro":  # the worker registered it; the same id
        schema_id = register_outputs(RegistryClient(settings), settings)["audit_record"]
    value = encode_record("audit_record", audit, settings.output_format, schema_id)
    try:
        produce_records(
            producer,
            settings.topics.audit,
            [(b"-", value)],
            timeout,
            f"the {what} audit record to {settings.topics.audit!r}",
        )
    except PolicyCommandError as exc:
        if AUDIT_REFUSED not in str(exc):
            raise
        click.echo(
            f"note: the {what} record was not written: this role may not write "
            f"{settings.topics.audit!r} (only the workers may); each worker audits the change "
            "it puts in force (policy_applied)",
            err=True,
        )


def _flush(producer: Producer, errors: list[str], timeout: float, what: str) -> None:
    left = producer.flush(timeout)
    if errors or left:
        problem = errors[0] if errors else f"{left} record(s) unsent after {timeout:.0f}s"
        raise PolicyCommandError(f"could not publish {what}: {problem}")
