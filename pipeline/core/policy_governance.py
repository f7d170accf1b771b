"""Four-eyes policy changes: may this `policies` record come into force?

Pure, so the CLI (which refuses to write such a record) and every worker (which refuses to
apply one that was written anyway) decide alike, and the rule is testable without Kafka.

Approval is required when the policy in force *or* the incoming one says
`governance.require_approval: true`. Asking only the policy in force would let one person
turn governance on unreviewed; asking only the new one would let one person publish a
policy that quietly switches it off. Either way, four eyes.

The topic alone cannot hold the rule for a worker that starts fresh: compaction keeps only
the latest `active` record, and a forged one that switches governance off would then meet
no policy in force that requires approval. So a deployment can require it for good
(`TOWER_POLICY_REQUIRE_APPROVAL=true`, passed in as `deployment`), whatever any policy says.

Four eyes are two *keys*, not two names: a name is what the CLI was told, a key is what
signed. An approved record carries the proposer's and the approver's Ed25519 signatures
(`pipeline.contracts.policy_signatures`); each must verify against a key the approvers file
lists under that name, the two keys must differ and so must the two names. One person with
two names (one key), or with two keys under one name, cannot pass alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts.policy_record import PolicyRecord
from pipeline.contracts.policy_signatures import (
    NO_APPROVERS,
    ApproverKeys,
    Role,
    fingerprint,
    signed_message,
    verifies,
)
from pipeline.core.policy import Policy


@dataclass(frozen=True, slots=True)
class Signer:
    """A name whose signature verified, and the fingerprint of the key that signed."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class VerifiedApproval:
    proposer: Signer
    approver: Signer

    def describe(self) -> str:
        return (
            f"proposed by {self.proposer.name} ({self.proposer.key}), "
            f"approved by {self.approver.name} ({self.approver.key})"
        )


def approval_required(in_force: Policy, new: Policy, deployment: bool = False) -> bool:
    """True when the change from `in_force` to `new` needs a second person."""
    return deployment or in_force.governance.require_approval or new.governance.require_approval


def same_person(a: str, b: str) -> bool:
    """Names compared as people type them: `Ana` and ` ana` are one person, not two."""
    return a.strip().casefold() == b.strip().casefold()


def approval_problem(
    record: PolicyRecord,
    in_force: Policy,
    new: Policy,
    deployment: bool = False,
    approvers: ApproverKeys = NO_APPROVERS,
) -> str | None:
    """Why `record` (carrying `new`) may not replace `in_force`, or None if it may.

    A record needs no approval fields unless `approval_required`; then it must name a
    proposer and an approver who is someone else, and carry both their signatures, made
    with two different keys of the approvers file.
    """
    if not approval_required(in_force, new, deployment):
        return None
    why = why_approval(in_force, new, deployment)
    proposer = (record.proposed_by or "").strip()
    approver = (record.approved_by or "").strip()
    if not approver or record.approved_at is None:
        return f"{why} and the record has no approval (use tower policy propose / approve)"
    if not proposer:
        return f"{why} and the record names no proposer"
    if same_person(proposer, approver):
        return f"{why} and the record was approved by its own proposer {proposer!r}"
    verified = verify_approval(record, approvers)
    if isinstance(verified, str):
        return f"{why} and {verified}"
    return None


def verify_approval(record: PolicyRecord, approvers: ApproverKeys) -> VerifiedApproval | str:
    """Who verifiably proposed and approved `record`, or why that cannot be shown."""
    if not approvers:
        return (
            "no approver keys are configured to verify its signatures "
            "(set TOWER_POLICY_APPROVERS_FILE)"
        )
    proposer = signer(record, "propose", approvers)
    if isinstance(proposer, str):
        return proposer
    approver = signer(record, "approve", approvers)
    if isinstance(approver, str):
        return approver
    if proposer.key == approver.key:
        return (
            f"proposer {proposer.name!r} and approver {approver.name!r} signed with the same "
            f"key {proposer.key} (four eyes needs two people's keys)"
        )
    if same_person(proposer.name, approver.name):
        return f"the record was approved by its own proposer {proposer.name!r}"
    return VerifiedApproval(proposer, approver)


def signer(record: PolicyRecord, role: Role, approvers: ApproverKeys) -> Signer | str:
    """The verified signer of one step of `record`, or why its signature does not count."""
    if role == "propose":
        name, at, signature = record.proposed_by, record.proposed_at, record.proposal_signature
    else:
        name, at, signature = record.approved_by, record.approved_at, record.approval_signature
    step = "proposal" if role == "propose" else "approval"
    if not name or at is None:
        return f"the {step} names no one"
    if not signature:
        return f"the {step} by {name!r} is not signed (tower policy {role} --key)"
    keys = approvers.keys_of(name)
    if not keys:
        return f"{name!r} is not in the approvers file, so their {step} cannot be verified"
    message = signed_message(role, name, at, record.policy_version, record.document)
    for key in keys:
        if verifies(key, signature, message):
            return Signer(name.strip(), fingerprint(key))
    return (
        f"the {step} signature of {name!r} does not verify against their key in the "
        "approvers file (forged, or the record was altered)"
    )


def why_approval(in_force: Policy, new: Policy, deployment: bool = False) -> str:
    """Which of the three asks for the approval, for messages."""
    if deployment:
        return "this deployment requires approval (TOWER_POLICY_REQUIRE_APPROVAL)"
    if in_force.governance.require_approval:
        return f"the policy in force ({in_force.policy_version}) has governance.require_approval"
    return f"{new.policy_version} sets governance.require_approval"
