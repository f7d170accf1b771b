"""The governance flow of a policy change: publish it, or propose, approve or reject it.

Four eyes (`governance.require_approval` in the policy in force or the new one, see
`pipeline.core.policy_governance`): `publish` refuses, and a change is `propose`d by one
person (`pending/<v>`, audit `policy_proposed`) and `approve`d by another, which publishes
it with both names (audit `policy_changed`), or `reject`ed (audit `policy_rejected`).
Proposer and approver sign their step with their own Ed25519 key (`--key`, made by
`keygen`); workers verify both signatures against the approvers file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pipeline.contracts.events import Source
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    PolicyRecord,
    encode_policy_record,
    pending_key,
    version_key,
)
from pipeline.contracts.policy_signatures import fingerprint, sign, signed_message, verifies
from pipeline.core.policy import Policy
from pipeline.core.policy_changes import policy_changes, summary
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.policy_governance import (
    VerifiedApproval,
    approval_required,
    same_person,
    verify_approval,
    why_approval,
)
from pipeline.kafka import clients
from pipeline.kafka.policy_follower import PolicyMismatch, load_approvers, policy_from_record
from pipeline.kafka.topics import wait_for_broker
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.ops.policy.policy_topic import (
    PolicyTopic,
    produce_records,
    read_policies,
    write_audit,
)
from pipeline.ops.policy.signing_keys import SigningKey, check_key_is_theirs
from pipeline.processing.records import policy_change_record, policy_review_record
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class Published:
    record: PolicyRecord
    old_version: str
    changes: list[str]
    audit: dict[str, Any]


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


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _person(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise PolicyCommandError(f"--by is empty: name who {what}")
    return name


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
    offsets = produce_records(producer, topic, writes, timeout, f"policy {v} to {topic!r}")
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
    write_audit(producer, settings, audit, timeout, "policy_changed")
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
        check_key_is_theirs(proposed_by, key, approvers)
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    state = read_policies(settings)
    old, v = state.in_force, policy.policy_version
    if v == old.policy_version:
        raise PolicyCommandError(f"{v} is already the policy in force: nothing to propose")
    if v in state.pending:
        p = state.pending[v]
        raise PolicyCommandError(
            f"{v} is already pending, proposed by {p.proposed_by} at {when(p.published_at)}: "
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
    offsets = produce_records(
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
    write_audit(producer, settings, audit, timeout, "policy_proposed")
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
        check_key_is_theirs(approved_by, key, approvers)
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
    offsets = produce_records(
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
    write_audit(producer, settings, audit, timeout, "policy_rejected")
    return Rejected(pending, audit)


def when(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
