"""`tower policy ...`: validate, publish, show and what-if a policy document.

Publishing writes the document to the compacted policies topic (see
`pipeline.contracts.policy_record` for the wire format), where every worker's
`PolicyFollower` picks it up between two batches, and records the change in the audit
topic. `diff` answers "what would this change do?" before anyone publishes: it re-decides
recorded input under both policies with the pure core.

Four eyes (`governance.require_approval` in the policy in force or the new one, see
`pipeline.core.policy_governance`): `publish` refuses, and a change is `propose`d by one
person (`pending/<v>`, audit `policy_proposed`) and `approve`d by another, which publishes
it with both names (audit `policy_changed`), or `reject`ed (audit `policy_rejected`).
Proposer and approver sign their step with their own Ed25519 key (`--key`, made by
`keygen`); workers verify both signatures against the approvers file.
"""

from __future__ import annotations

import os
import stat
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import KafkaException, Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.contracts.codec import InvalidEvent, decode_event, encode_record
from pipeline.contracts.events import AgentEvent, Source
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    PENDING_PREFIX,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
    pending_key,
    version_key,
)
from pipeline.contracts.policy_signatures import (
    ApproverKeys,
    ApproversFileError,
    KeyFileError,
    fingerprint,
    load_private_key,
    new_private_key,
    private_key_pem,
    public_key_bytes,
    public_key_text,
    sign,
    signed_message,
    verifies,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_changes import policy_changes, summary
from pipeline.core.policy_document import PolicyError, load_policy, load_policy_file
from pipeline.core.policy_governance import (
    VerifiedApproval,
    approval_required,
    same_person,
    verify_approval,
    why_approval,
)
from pipeline.core.whatif import WhatIfReport, what_if
from pipeline.kafka import clients
from pipeline.kafka.policy_follower import (
    PolicyMismatch,
    PolicyUnapproved,
    active_policy_from_record,
    load_approvers,
    policy_from_record,
)
from pipeline.kafka.reader import (
    ScanError,
    read_range,
    scan_consumer,
    scan_topic,
    watermarks,
)
from pipeline.kafka.schema_registry import RegistryClient, register_outputs
from pipeline.kafka.topics import TopicsError, list_topics, wait_for_broker
from pipeline.ops.cli_errors import friendly_errors
from pipeline.processing.records import policy_change_record, policy_review_record
from pipeline.settings import Settings

KAFKA_PREFIX = "kafka:"


class PolicyCommandError(Exception):
    """An expected failure of a policy command; the message says what to do."""


_friendly_errors = friendly_errors(
    PolicyCommandError, TopicsError, KafkaException, KeyFileError, ApproversFileError
)


# --- reading and writing the policies topic ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    record: PolicyRecord
    policy: Policy


@dataclass(frozen=True, slots=True)
class Published:
    record: PolicyRecord
    old_version: str
    changes: list[str]
    audit: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class Proposed:
    record: PolicyRecord
    current_version: str
    changes: list[str]
    approval_required: bool
    audit: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    record: PolicyRecord
    audit: dict[str, Any]


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


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _person(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise PolicyCommandError(f"--by is empty: name who {what}")
    return name


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An operator's private key, read from `--key` / TOWER_POLICY_KEY_FILE."""

    key: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> bytes:
        return public_key_bytes(self.key)


def read_key(path: Path) -> SigningKey:
    """The private key at `path`; refused if others may read it (like ssh does)."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise PolicyCommandError(f"--key {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PolicyCommandError(
            f"--key {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
            f"run `chmod 600 {path}`"
        )
    return SigningKey(load_private_key(pem, str(path)), path)


def _signer_name(by: str | None, key: SigningKey | None, approvers: ApproverKeys) -> str | None:
    """The name the key is listed under in the approvers file, when `--by` is not given."""
    if by is not None or key is None:
        return by
    names = [n for n, keys in approvers.by_name.items() if key.public in keys]
    return names[0] if names else None


def _check_key_is_theirs(name: str, key: SigningKey, approvers: ApproverKeys) -> None:
    """Fail before writing what every worker would refuse: a key not listed under `name`."""
    if not approvers:
        return
    if key.public in approvers.keys_of(name):
        return
    owners = [n for n, keys in approvers.by_name.items() if key.public in keys]
    if owners:
        raise PolicyCommandError(
            f"--key {key.path} is {owners[0]}'s key in the approvers file, not {name}'s: "
            f"sign with your own key, or pass --by {owners[0]} if you are {owners[0]}"
        )
    raise PolicyCommandError(
        f"--key {key.path} ({fingerprint(key.public)}) is not {name}'s in the approvers file "
        f"{key_listing_hint(name, key)}"
    )


def key_listing_hint(name: str, key: SigningKey) -> str:
    return f"(add `{name} {public_key_text(key.key)}` to TOWER_POLICY_APPROVERS_FILE)"


@dataclass(frozen=True, slots=True)
class NewKey:
    private: Path
    public: Path
    line: str


def keygen(name: str, out: Path) -> NewKey:
    """A new Ed25519 key pair for `name`: `out/NAME.key` (mode 0600, never overwritten)
    and `out/NAME.pub`, the line to add to the approvers file."""
    name = name.strip()
    if not name or any(c.isspace() for c in name) or "#" in name:
        raise PolicyCommandError(f"--name {name!r}: one word, no spaces or #, e.g. ana")
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{name}.key", out / f"{name}.pub"
    key = new_private_key()
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PolicyCommandError(
            f"{private} exists: keep it, or move it away to make a new key"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    line = f"{name} {public_key_text(key)}"
    public.write_text(line + "\n", encoding="utf-8")
    return NewKey(private, public, line)


def publish_policy(
    settings: Settings,
    text: str,
    source: str,
    published_by: str,
    now_ms: int | None = None,
    timeout: float = 30.0,
) -> Published:
    """Validate `text`, make it the active policy, and audit the change (old -> new).

    Refused when four-eyes governance applies (see `pipeline.core.policy_governance`):
    then a change goes through `propose_policy` and `approve_policy`.
    """
    policy = load_policy(text, source)  # raises PolicyError before anything is written
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    old = read_policies(settings).in_force
    if approval_required(old, policy, settings.policy_require_approval):
        why = why_approval(old, policy, settings.policy_require_approval)
        raise PolicyCommandError(
            f"{why}, so a change needs a second person: run "
            f"`tower policy propose {source} --key YOUR_KEY`, then someone else runs "
            f"`tower policy approve {policy.policy_version} --key THEIR_KEY`"
        )
    record = PolicyRecord(
        version=policy.version,
        policy_version=policy.policy_version,
        content_hash=policy.content_hash,
        document=text,
        published_at=_now(now_ms),
        published_by=published_by,
    )
    return _put_in_force(settings, record, policy, old, timeout)


def _put_in_force(
    settings: Settings,
    record: PolicyRecord,
    policy: Policy,
    old: Policy,
    timeout: float,
    verified: VerifiedApproval | None = None,
) -> Published:
    """Write `version/<v>`, then `active` (then close `pending/<v>` if it was proposed), then
    the `policy_changed` audit record."""
    value = encode_policy_record(record)
    topic = settings.topics.policies
    v = policy.policy_version
    # history first: once `active` is visible, its version is always findable too
    writes: list[tuple[bytes, bytes | None]] = [(version_key(v), value), (ACTIVE_KEY, value)]
    if record.proposed_by is not None:
        writes.append((pending_key(v), None))
    producer = clients.producer(settings)
    offsets = _produce(producer, topic, writes, timeout, f"policy {v} to {topic!r}")
    changes = policy_changes(old, policy)
    audit = policy_change_record(
        summary(old, policy),
        changes,
        old.policy_version,
        v,
        record.published_by,
        record.published_at,
        Source(topic, 0, offsets[ACTIVE_KEY], record.published_at),
        value.decode(),
        proposed_by=record.proposed_by,
    )
    if verified is not None:  # which keys signed, for an auditor to check against the file
        audit["trace"].insert(2, _verified_step(verified))
    _audit(producer, settings, audit, timeout, "policy_changed")
    return Published(record, old.policy_version, changes, audit)


def _verified_step(verified: VerifiedApproval) -> dict[str, str]:
    return {"rule": "governance", "verdict": "verified", "reason": verified.describe()}


def propose_policy(
    settings: Settings,
    text: str,
    source: str,
    proposed_by: str,
    now_ms: int | None = None,
    timeout: float = 30.0,
    key: SigningKey | None = None,
) -> Proposed:
    """Validate `text` and file it as `pending/<v>`, signed with `key`; nothing changes
    until someone else approves it. Audited as `policy_proposed`."""
    policy = load_policy(text, source)
    proposed_by = _person(proposed_by, "proposes")
    approvers = load_approvers(settings.policy_approvers_file)
    if key is not None:
        _check_key_is_theirs(proposed_by, key, approvers)
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    state = read_policies(settings)
    old, v = state.in_force, policy.policy_version
    if v == old.policy_version:
        raise PolicyCommandError(f"{v} is already the policy in force: nothing to propose")
    if v in state.pending:
        p = state.pending[v]
        raise PolicyCommandError(
            f"{v} is already pending, proposed by {p.proposed_by} at {_when(p.published_at)}: "
            f"approve it (`tower policy approve {v} --key KEY`) or reject it"
        )
    required = approval_required(old, policy, settings.policy_require_approval)
    if required and key is None:
        raise PolicyCommandError(
            f"{why_approval(old, policy, settings.policy_require_approval)}, so the proposal "
            "must be signed: pass --key PATH or set TOWER_POLICY_KEY_FILE "
            "(make a key with `tower policy keygen --name NAME --out DIR`)"
        )
    at = _now(now_ms)
    record = PolicyRecord(
        version=policy.version,
        policy_version=v,
        content_hash=policy.content_hash,
        document=text,
        published_at=at,
        published_by=proposed_by,
        proposed_by=proposed_by,
        proposed_at=at,
        proposal_signature=(
            None
            if key is None
            else sign(key.key, signed_message("propose", proposed_by, at, v, text))
        ),
    )
    value = encode_policy_record(record)
    topic = settings.topics.policies
    producer = clients.producer(settings)
    offsets = _produce(
        producer, topic, [(pending_key(v), value)], timeout, f"proposal {v} to {topic!r}"
    )
    changes = policy_changes(old, policy)
    audit = policy_review_record(
        "policy_proposed",
        v,
        proposed_by,
        proposed_by,
        at,
        f"policy {old.policy_version} -> {v} proposed by {proposed_by}, awaiting approval",
        changes,
        Source(topic, 0, offsets[pending_key(v)], at),
        value.decode(),
    )
    _audit(producer, settings, audit, timeout, "policy_proposed")
    return Proposed(record, old.policy_version, changes, required, audit)


def _pending(state: PolicyTopic, version: str) -> PolicyRecord:
    record = state.pending.get(version)
    if record is not None:
        return record
    if not state.pending:
        raise PolicyCommandError(
            f"{version} is not pending: no change is pending (`tower policy propose FILE`)"
        )
    listed = ", ".join(f"{v} (by {r.proposed_by})" for v, r in state.pending.items())
    raise PolicyCommandError(f"{version} is not pending; pending: {listed}")


def approve_policy(
    settings: Settings,
    version: str,
    approved_by: str,
    now_ms: int | None = None,
    timeout: float = 30.0,
    key: SigningKey | None = None,
) -> Published:
    """Put the pending `version` in force, signed with `key`, if `approved_by` is not the
    person who proposed it (another name and another key). The records carry both names
    and signatures; the `policy_changed` audit record names both and their keys."""
    approved_by = _person(approved_by, "approves")
    approvers = load_approvers(settings.policy_approvers_file)
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    state = read_policies(settings)
    pending = _pending(state, version)
    proposer = pending.proposed_by or pending.published_by
    if same_person(proposer, approved_by):
        raise PolicyCommandError(
            f"{version} was proposed by {proposer}, who cannot also approve it (four eyes): "
            f"ask someone else to run `tower policy approve {version} --key THEIR_KEY`, or "
            f"withdraw it with `tower policy reject {version} --by {approved_by}`"
        )
    if key is not None:
        _check_key_is_theirs(approved_by, key, approvers)
    try:
        policy = policy_from_record(pending)
    except (PolicyError, PolicyMismatch) as exc:
        raise PolicyCommandError(
            f"pending {version} cannot be used ({exc}); reject it and propose again"
        ) from None
    required = approval_required(state.in_force, policy, settings.policy_require_approval)
    if required and key is None:
        raise PolicyCommandError(
            f"{why_approval(state.in_force, policy, settings.policy_require_approval)}, so the "
            "approval must be signed: pass --key PATH or set TOWER_POLICY_KEY_FILE "
            "(make a key with `tower policy keygen --name NAME --out DIR`)"
        )
    at = _now(now_ms)
    proposed_at = pending.proposed_at or pending.published_at
    if key is not None and pending.proposal_signature:
        proposal = signed_message("propose", proposer, proposed_at, version, pending.document)
        if verifies(key.public, pending.proposal_signature, proposal):
            raise PolicyCommandError(
                f"{version} was proposed with this same key ({fingerprint(key.public)}), which "
                "cannot also approve it (four eyes): ask someone else to approve it with "
                "their own key"
            )
    record = replace(
        pending,
        published_at=at,
        published_by=approved_by,
        proposed_by=proposer,
        proposed_at=proposed_at,
        approved_by=approved_by,
        approved_at=at,
        approval_signature=(
            None
            if key is None
            else sign(
                key.key, signed_message("approve", approved_by, at, version, pending.document)
            )
        ),
    )
    verified: VerifiedApproval | None = None
    if required:
        checked = verify_approval(record, approvers)
        if isinstance(checked, str):
            raise PolicyCommandError(
                f"{version} would be refused by every worker: {checked}; nothing was written"
            )
        verified = checked
    return _put_in_force(settings, record, policy, state.in_force, timeout, verified)


def reject_policy(
    settings: Settings,
    version: str,
    rejected_by: str,
    reason: str | None = None,
    now_ms: int | None = None,
    timeout: float = 30.0,
) -> Rejected:
    """Close the pending `version` without putting it in force: a tombstone on its pending
    key and a `policy_rejected` audit record naming proposer, rejecter and reason. The
    proposer may reject (withdraw) their own proposal."""
    rejected_by = _person(rejected_by, "rejects")
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    state = read_policies(settings)
    pending = _pending(state, version)
    proposer = pending.proposed_by or pending.published_by
    at = _now(now_ms)
    topic = settings.topics.policies
    producer = clients.producer(settings)
    offsets = _produce(
        producer, topic, [(pending_key(version), None)], timeout, f"rejection of {version}"
    )
    try:
        changes = policy_changes(state.in_force, policy_from_record(pending))
    except (PolicyError, PolicyMismatch):
        changes = []  # an unusable proposal can still be rejected
    why = reason.strip() if reason and reason.strip() else "no reason given"
    audit = policy_review_record(
        "policy_rejected",
        version,
        proposer,
        rejected_by,
        at,
        f"policy {version} proposed by {proposer} rejected by {rejected_by}: {why}",
        changes,
        Source(topic, 0, offsets[pending_key(version)], at),
        encode_policy_record(pending).decode(),
    )
    _audit(producer, settings, audit, timeout, "policy_rejected")
    return Rejected(pending, audit)


def _produce(
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


def _audit(
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
        _produce(
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


def _when(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


# --- recorded input for the what-if -------------------------------------------------------


@dataclass(slots=True)
class LoadedEvents:
    events: list[AgentEvent]
    skipped: int = 0
    first_problems: list[str] | None = None

    def skip(self, where: str, problem: str) -> None:
        self.skipped += 1
        problems = self.first_problems = self.first_problems or []
        if len(problems) < 3:
            problems.append(f"{where}: {problem}")


def load_events(source: str, settings: Settings, limit: int | None = None) -> LoadedEvents:
    """Events from a JSONL file or `kafka:TOPIC`; records the worker would dead-letter skip."""
    if source.startswith(KAFKA_PREFIX):
        return _events_from_kafka(source[len(KAFKA_PREFIX) :], settings, limit)
    return _events_from_jsonl(Path(source), limit)


def _events_from_jsonl(path: Path, limit: int | None) -> LoadedEvents:
    if not path.is_file():
        raise PolicyCommandError(f"{path}: no such file (use a JSONL file or kafka:TOPIC)")
    out = LoadedEvents([])
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(out.events) >= limit:
                break
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                key = data.get("customer_id") if isinstance(data, dict) else None
                event = decode_event(key.encode() if isinstance(key, str) else None, line)
            except (orjson.JSONDecodeError, InvalidEvent) as exc:
                out.skip(f"{path}:{n}", str(exc))
                continue
            out.events.append(event)
    return out


def _events_from_kafka(topic: str, settings: Settings, limit: int | None) -> LoadedEvents:
    """Every partition from its beginning to its end offset as of now (a fixed snapshot)."""
    wait_for_broker(settings, timeout=10.0)
    out = LoadedEvents([])
    try:
        for rec in scan_topic(settings, topic):
            if limit is not None and len(out.events) >= limit:
                break
            try:
                out.events.append(decode_event(rec.key, rec.value))
            except InvalidEvent as exc:
                out.skip(f"{topic}[{rec.partition}]@{rec.offset}", str(exc))
    except ScanError as exc:
        raise PolicyCommandError(str(exc)) from None
    return out


def format_report(report: WhatIfReport) -> str:
    """The change table: outcomes under both policies, then each changed transition."""
    share = report.changed / report.events if report.events else 0.0
    lines = [
        f"what-if over {report.events} events",
        f"  old {report.old_version}",
        f"  new {report.new_version}",
        f"  changed decisions: {report.changed} ({share:.1%})",
        "",
        f"{'outcome':<14}{'old':>9}{'new':>9}{'delta':>9}",
    ]
    for outcome in sorted(set(report.old_outcomes) | set(report.new_outcomes)):
        before, after = report.old_outcomes[outcome], report.new_outcomes[outcome]
        lines.append(f"{outcome:<14}{before:>9}{after:>9}{after - before:>+9}")
    lines.append(f"{'total':<14}{report.events:>9}{report.events:>9}{0:>+9}")
    changed = report.changed_transitions()
    lines.append("")
    if not changed:
        lines.append("no decision changes")
        return "\n".join(lines)
    width = max(len(f"{a} -> {b}") for (a, b), _ in changed)
    lines.append(f"{'transition (old -> new)':<{width}}{'count':>9}  examples")
    for (a, b), n in changed:
        examples = ", ".join(report.examples.get((a, b), []))
        lines.append(f"{f'{a} -> {b}':<{width}}{n:>9}  {examples}")
    return "\n".join(lines)


# --- the commands ------------------------------------------------------------------------

_bootstrap_option = click.option(
    "--bootstrap",
    help=f"Kafka bootstrap servers [default: TOWER_BOOTSTRAP or {Settings().bootstrap}].",
)
_policy_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group("policy")
def policy_group() -> None:
    """Policy as code: validate, publish (hot reload on every worker), show, what-if;
    propose / approve / reject / pending when changes need four eyes."""


@policy_group.command("validate")
@_policy_file
@_friendly_errors
def policy_validate(file: Path) -> None:
    """Check a policy YAML; print every problem as file:line: path: message (exit 1)."""
    policy = load_policy_file(file)
    click.echo(f"ok: version {policy.version}, policy_version {policy.policy_version}")


@policy_group.command("publish")
@_policy_file
@_bootstrap_option
@click.option("--by", "by", default=None, help="Who publishes [default: $USER].")
@_friendly_errors
def policy_publish(file: Path, bootstrap: str | None, by: str | None) -> None:
    """Validate FILE and make it the active policy of every worker, without a restart."""
    import getpass

    settings = Settings.from_env(bootstrap=bootstrap)
    text = file.read_text(encoding="utf-8")
    published = publish_policy(settings, text, str(file), by or getpass.getuser())
    click.echo(f"published {published.record.policy_version} (was {published.old_version})")
    for line in published.changes or ["no setting changed"]:
        click.echo(f"  {line}")


@policy_group.command("show")
@_bootstrap_option
@_friendly_errors
def policy_show(bootstrap: str | None) -> None:
    """Show the active published policy (what the workers decide with)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    wait_for_broker(settings, timeout=10.0)
    active = read_active(settings)
    if active is None:
        click.echo(
            f"no policy published on {settings.topics.policies!r}: workers use "
            f"TOWER_POLICY_FILE or the built-in default ({DEFAULT_POLICY.policy_version})"
        )
        return
    r = active.record
    click.echo(f"policy_version  {r.policy_version}")
    click.echo(f"published       {_when(r.published_at)} by {r.published_by}")
    if r.proposed_by is not None:
        click.echo(f"proposed        {_when(r.proposed_at)} by {r.proposed_by}")
        click.echo(f"approved        {_when(r.approved_at)} by {r.approved_by}")
    if r.approval_signature:
        verified = verify_approval(r, load_approvers(settings.policy_approvers_file))
        shown = verified.describe() if isinstance(verified, VerifiedApproval) else verified
        click.echo(f"signatures      {shown}")
    if active.policy.notes:
        click.echo(f"notes           {active.policy.notes}")


_by_option = click.option("--by", "by", default=None, help="Who does it [default: $USER].")
_version_argument = click.argument("version")
_key_option = click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your private key, to sign [default: TOWER_POLICY_KEY_FILE] (`tower policy keygen`).",
)


def _by(by: str | None) -> str:
    import getpass

    return by if by is not None else getpass.getuser()


def _signing(
    settings: Settings, key_file: Path | None, by: str | None
) -> tuple[str, SigningKey | None]:
    """Who signs with which key: `--by`, else the key's name in the approvers file, else $USER."""
    path = key_file or settings.policy_key_file
    key = read_key(path) if path is not None else None
    named = _signer_name(by, key, load_approvers(settings.policy_approvers_file))
    return _by(named), key


@policy_group.command("keygen")
@click.option("--name", required=True, help="Your name, as the approvers file will list it.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for NAME.key (private, 0600) and NAME.pub.",
)
@_friendly_errors
def policy_keygen(name: str, out: Path) -> None:
    """Make an Ed25519 key pair to sign policy proposals and approvals with."""
    made = keygen(name, out)
    click.echo(
        f"private key  {made.private}  (mode 0600: keep it yours; --key / TOWER_POLICY_KEY_FILE)"
    )
    click.echo(f"public key   {made.public}")
    click.echo("add this line to the approvers file (TOWER_POLICY_APPROVERS_FILE) of every")
    click.echo("worker and operator:")
    click.echo(made.line)


@policy_group.command("propose")
@_policy_file
@_bootstrap_option
@_by_option
@_key_option
@_friendly_errors
def policy_propose(
    file: Path, bootstrap: str | None, by: str | None, key_file: Path | None
) -> None:
    """Validate FILE and file it, signed, for approval by someone else (four eyes)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    text = file.read_text(encoding="utf-8")
    name, key = _signing(settings, key_file, by)
    proposed = propose_policy(settings, text, str(file), name, key=key)
    v = proposed.record.policy_version
    click.echo(f"proposed {v} (in force: {proposed.current_version}), awaiting approval")
    for line in proposed.changes or ["no setting changed"]:
        click.echo(f"  {line}")
    if not proposed.approval_required:
        click.echo("note: no policy requires approval here; `tower policy publish` would do")
    click.echo(f"next: someone else runs `tower policy approve {v} --key THEIR_KEY`")


@policy_group.command("approve")
@_version_argument
@_bootstrap_option
@_by_option
@_key_option
@_friendly_errors
def policy_approve(
    version: str, bootstrap: str | None, by: str | None, key_file: Path | None
) -> None:
    """Approve, signed, the pending VERSION (not your own proposal): it goes into force."""
    settings = Settings.from_env(bootstrap=bootstrap)
    name, key = _signing(settings, key_file, by)
    published = approve_policy(settings, version, name, key=key)
    r = published.record
    click.echo(
        f"approved {r.policy_version} (proposed by {r.proposed_by}, approved by "
        f"{r.approved_by}); now in force (was {published.old_version})"
    )
    for line in published.changes or ["no setting changed"]:
        click.echo(f"  {line}")


@policy_group.command("reject")
@_version_argument
@_bootstrap_option
@_by_option
@click.option("--reason", default=None, help="Why, for the audit record.")
@_friendly_errors
def policy_reject(version: str, bootstrap: str | None, by: str | None, reason: str | None) -> None:
    """Reject the pending VERSION: it never comes into force; the audit records who and why."""
    settings = Settings.from_env(bootstrap=bootstrap)
    rejected = reject_policy(settings, version, _by(by), reason)
    click.echo(f"rejected {version}: {rejected.audit['reason']}")


@policy_group.command("pending")
@_bootstrap_option
@_friendly_errors
def policy_pending(bootstrap: str | None) -> None:
    """List the proposed changes waiting for approval, oldest first."""
    settings = Settings.from_env(bootstrap=bootstrap)
    wait_for_broker(settings, timeout=10.0)
    state = read_policies(settings)
    if not state.pending:
        click.echo("no policy change pending")
        return
    for v, r in state.pending.items():
        proposer = r.proposed_by or r.published_by
        click.echo(f"{v}  proposed by {proposer} at {_when(r.proposed_at or r.published_at)}")


@policy_group.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--events",
    "source",
    required=True,
    help="Recorded input: a JSONL file of agent events, or kafka:TOPIC (read to its end).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Decide at most N events.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_bootstrap_option
@_friendly_errors
def policy_diff(
    old: Path, new: Path, source: str, limit: int | None, as_json: bool, bootstrap: str | None
) -> None:
    """What would change: re-decide recorded events under OLD and NEW, count the differences."""
    old_policy, new_policy = load_policy_file(old), load_policy_file(new)
    settings = Settings.from_env(bootstrap=bootstrap)
    loaded = load_events(source, settings, limit)
    report = what_if(loaded.events, old_policy, new_policy)
    if as_json:
        data = report.to_dict()
        data["skipped"] = loaded.skipped
        data["settings_changed"] = policy_changes(old_policy, new_policy)
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    for line in policy_changes(old_policy, new_policy) or ["no setting changed"]:
        click.echo(f"setting  {line}")
    click.echo(format_report(report))
    if loaded.skipped:
        click.echo(f"\nskipped {loaded.skipped} invalid record(s), e.g.:", err=True)
        for problem in loaded.first_problems or []:
            click.echo(f"  {problem}", err=True)
