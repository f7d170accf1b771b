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
"""

from __future__ import annotations

from pipeline.contracts.policy_record import PolicyRecord
from pipeline.core.policy import Policy


def approval_required(in_force: Policy, new: Policy, deployment: bool = False) -> bool:
    """True when the change from `in_force` to `new` needs a second person."""
    return deployment or in_force.governance.require_approval or new.governance.require_approval


def same_person(a: str, b: str) -> bool:
    """Names compared as people type them: `Ana` and ` ana` are one person, not two."""
    return a.strip().casefold() == b.strip().casefold()


def approval_problem(
    record: PolicyRecord, in_force: Policy, new: Policy, deployment: bool = False
) -> str | None:
    """Why `record` (carrying `new`) may not replace `in_force`, or None if it may.

    A record needs no approval fields unless `approval_required`; then it must name a
    proposer, an approver who is someone else, and when the approval happened.
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
    return None


def why_approval(in_force: Policy, new: Policy, deployment: bool = False) -> str:
    """Which of the three asks for the approval, for messages."""
    if deployment:
        return "this deployment requires approval (TOWER_POLICY_REQUIRE_APPROVAL)"
    if in_force.governance.require_approval:
        return f"the policy in force ({in_force.policy_version}) has governance.require_approval"
    return f"{new.policy_version} sets governance.require_approval"
