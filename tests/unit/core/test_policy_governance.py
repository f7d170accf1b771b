"""Four-eyes governance: the `governance:` block of a policy document, its effect on the
policy hash, and the pure rule deciding whether an `active` record may come into force:
two names, and two signatures by two different keys of the approvers file."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.policy_record import PolicyRecord
from pipeline.contracts.policy_signatures import ApproverKeys, fingerprint, parse_approvers
from pipeline.core.policy import DEFAULT_POLICY, Governance, Policy
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.policy_governance import (
    VerifiedApproval,
    approval_problem,
    approval_required,
    same_person,
    verify_approval,
)
from tests.policy_signing import Keyring, message, raw_public

HEAD = "version: 1.0.0\n"  # line 1
GOVERNED = replace(DEFAULT_POLICY, governance=Governance(require_approval=True))
PLAIN = DEFAULT_POLICY


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", Governance()),
        ("governance: {}\n", Governance()),
        ("governance: {require_approval: false}\n", Governance()),
        ("governance: {require_approval: true}\n", Governance(require_approval=True)),
        ("governance:\n  require_approval: true\n", Governance(require_approval=True)),
    ],
)
def test_the_document_reads_the_governance_block(body, expected):
    assert load_policy(HEAD + body).governance == expected


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("governance:\n  require_approval: 1\n", 3, "governance.require_approval", "true or"),
        ("governance:\n  require_approval: 'true'\n", 3, "governance.require_approval", "got"),
        ("governance:\n  require_approval: [true]\n", 3, "governance.require_approval", "false"),
        ("governance: true\n", 2, "governance", "must be a mapping with keys: require_approval"),
        (
            "governance:\n  require_approval: true\n  approvers: [ana]\n",
            4,
            "governance.approvers",
            "unknown key; valid keys: require_approval",
        ),
        (
            "governance:\n  require_approval: true\n  require_approval: false\n",
            4,
            "governance.require_approval",
            "duplicate key",
        ),
    ],
)
def test_a_bad_governance_block_is_refused_with_its_line(body, line, path, hint):
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + body, "p.yaml")
    [issue] = err.value.issues
    assert (issue.line, issue.path) == (line, path)
    assert hint in issue.message
    assert str(err.value).startswith(f"p.yaml:{line}: {path}: ")


def test_a_policy_without_governance_keeps_its_version_hash():
    """Adding the setting must not change the version of every policy published before."""
    assert Policy().policy_version == "1.0.0+747d035d5eff"
    off = load_policy(HEAD + "governance: {require_approval: false}\n")
    assert off.policy_version == DEFAULT_POLICY.policy_version
    on = load_policy(HEAD + "governance: {require_approval: true}\n")
    assert on.policy_version != DEFAULT_POLICY.policy_version == PLAIN.policy_version
    assert on.policy_version == GOVERNED.policy_version


def test_switching_governance_shows_as_a_change():
    assert policy_changes(PLAIN, GOVERNED) == ["governance.require_approval: False -> True"]
    assert policy_changes(GOVERNED, PLAIN) == ["governance.require_approval: True -> False"]


KEYS = Keyring()
APPROVERS = parse_approvers(KEYS.approvers_text("ana", "ben", "carol"), "approvers")
DOC = "version: 1.0.0\n"


def signature(signer: str, role: str, name: str, at: int, document: str = DOC) -> str:
    import base64

    return base64.b64encode(
        KEYS[signer].sign(message(role, name, at, "1.0.0+x", document))
    ).decode()


def record(
    proposed_by: str | None = None,
    approved_by: str | None = None,
    approved: bool = True,
    *,
    proposer_key: str | None = None,
    approver_key: str | None = None,
    signed: bool = True,
) -> PolicyRecord:
    """A record naming `proposed_by` and `approved_by`, each step signed by the key of the
    person named, or of `proposer_key` / `approver_key` (a forger's), or unsigned."""
    approved_at = 2 if approved_by and approved else None
    return PolicyRecord(
        version="1.0.0",
        policy_version="1.0.0+x",
        content_hash="x",
        document=DOC,
        published_at=2,
        published_by=approved_by or proposed_by or "ana",
        proposed_by=proposed_by,
        proposed_at=1 if proposed_by else None,
        approved_by=approved_by,
        approved_at=approved_at,
        proposal_signature=(
            signature(proposer_key or proposed_by.strip(), "propose", proposed_by, 1)
            if signed and proposed_by and proposed_by.strip()
            else None
        ),
        approval_signature=(
            signature(approver_key or approved_by.strip(), "approve", approved_by, 2)
            if signed and approved_by and approved_by.strip() and approved_at is not None
            else None
        ),
    )


@pytest.mark.parametrize(
    ("in_force", "new", "rec", "problem"),
    [
        # neither policy requires approval: any record will do, approved or not
        (PLAIN, PLAIN, record(), None),
        (PLAIN, PLAIN, record("ana", "ana"), None),
        # required by the policy in force (switching governance off needs four eyes too)
        (GOVERNED, PLAIN, record(), "has governance.require_approval and the record has no"),
        (GOVERNED, GOVERNED, record("ana"), "has no approval"),
        (GOVERNED, PLAIN, record("ana", "ben"), None),
        # required by the new policy (switching it on needs four eyes)
        (PLAIN, GOVERNED, record(), "sets governance.require_approval and the record has no"),
        (PLAIN, GOVERNED, record("ana", "ben"), None),
        # approval fields that do not add up
        (GOVERNED, GOVERNED, record("ana", "ben", approved=False), "has no approval"),
        (GOVERNED, GOVERNED, record(None, "ben"), "names no proposer"),
        (GOVERNED, GOVERNED, record("ana", "ana"), "approved by its own proposer 'ana'"),
        (GOVERNED, GOVERNED, record("ana", " Ana "), "approved by its own proposer"),
        (GOVERNED, GOVERNED, record("ana", "   "), "has no approval"),
        (GOVERNED, GOVERNED, record("ana", "ben"), None),
    ],
)
def test_which_records_may_come_into_force(in_force, new, rec, problem):
    got = approval_problem(rec, in_force, new, approvers=APPROVERS)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


names = st.one_of(st.none(), st.sampled_from(["ana", "Ana", " ana", "ben", "", " "]), st.text())


@given(
    in_force=st.sampled_from([PLAIN, GOVERNED]),
    new=st.sampled_from([PLAIN, GOVERNED]),
    proposed_by=names,
    approved_by=names,
    approved=st.booleans(),
)
def test_an_accepted_record_is_unreviewed_only_when_nobody_asked_for_review(
    in_force, new, proposed_by, approved_by, approved
):
    rec = record(proposed_by, approved_by, approved)
    accepted = approval_problem(rec, in_force, new, approvers=APPROVERS) is None
    if not approval_required(in_force, new):
        assert accepted
    elif accepted:
        assert rec.proposed_by and rec.approved_by and rec.approved_at is not None
        assert rec.proposed_by.strip() and rec.approved_by.strip()
        assert not same_person(rec.proposed_by, rec.approved_by)
        # ... and both signed with their own key of the approvers file
        assert {rec.proposed_by.strip(), rec.approved_by.strip()} <= set(APPROVERS.by_name)
    else:
        assert not (
            rec.proposed_by
            and rec.proposed_by.strip() in APPROVERS.by_name
            and rec.approved_by
            and rec.approved_by.strip() in APPROVERS.by_name
            and rec.approved_at is not None
            and not same_person(rec.proposed_by, rec.approved_by)
        )


#: ana's key listed under a second name: one person, two names (a file the parser refuses,
#: so built by hand, as a worker's memory could only hold it through a bug)
ONE_KEY_TWO_NAMES = ApproverKeys(
    {"ana": (raw_public(KEYS["ana"]),), "ana2": (raw_public(KEYS["ana"]),)}
)
#: one person with two keys under one name (a rotation in progress)
TWO_KEYS_ONE_NAME = ApproverKeys(
    {
        "ana": (raw_public(KEYS["ana"]), raw_public(KEYS["ana-new"])),
        "ben": (raw_public(KEYS["ben"]),),
    }
)


@pytest.mark.parametrize(
    ("rec", "approvers", "problem"),
    [
        # one person, two names: the same key signed both steps
        (record("ana", "ana2", approver_key="ana"), ONE_KEY_TWO_NAMES, "signed with the same key"),
        # one operator typing someone else's name: ben's approval signed with ana's key
        (
            record("ana", "ben", approver_key="ana"),
            APPROVERS,
            "approval signature of 'ben' does not verify",
        ),
        # forged: ben's approval signed by a key nobody listed
        (
            record("ana", "ben", approver_key="mallory"),
            APPROVERS,
            "approval signature of 'ben' does not verify",
        ),
        (
            record("ana", "ben", proposer_key="mallory"),
            APPROVERS,
            "proposal signature of 'ana' does not verify",
        ),
        # unsigned, or signed by someone the approvers file does not know
        (record("ana", "ben", signed=False), APPROVERS, "the proposal by 'ana' is not signed"),
        (
            replace(record("ana", "ben"), approval_signature=None),
            APPROVERS,
            "the approval by 'ben' is not signed",
        ),
        (record("ana", "dave"), APPROVERS, "'dave' is not in the approvers file"),
        (record("ana", "ben"), ApproverKeys(), "no approver keys are configured"),
        # the signatures cover the document, the version, the names and the times
        (
            replace(record("ana", "ben"), document="version: 1.0.0\n# more\n"),
            APPROVERS,
            "does not verify",
        ),
        (replace(record("ana", "ben"), policy_version="1.0.0+y"), APPROVERS, "does not verify"),
        (
            replace(record("ana", "ben"), approved_by="carol"),
            APPROVERS,
            "approval signature of 'carol'",
        ),
        (replace(record("ana", "ben"), approved_at=3), APPROVERS, "approval signature of 'ben'"),
        (replace(record("ana", "ben"), proposed_at=5), APPROVERS, "proposal signature of 'ana'"),
        (
            replace(record("ana", "ben"), approval_signature="not base64!"),
            APPROVERS,
            "does not verify",
        ),
        # one name, two keys: still one person
        (
            record("ana", "ana", approver_key="ana-new"),
            TWO_KEYS_ONE_NAME,
            "approved by its own proposer",
        ),
    ],
)
def test_four_eyes_are_two_keys_and_a_forged_signature_is_refused(rec, approvers, problem):
    got = approval_problem(rec, GOVERNED, GOVERNED, approvers=approvers)
    assert got is not None and problem in got, got
    assert got.startswith("the policy in force (")


def test_a_verified_approval_names_both_keys():
    verified = verify_approval(record("ana", "ben"), APPROVERS)
    assert isinstance(verified, VerifiedApproval)
    assert (verified.proposer.name, verified.approver.name) == ("ana", "ben")
    assert verified.proposer.key == fingerprint(raw_public(KEYS["ana"]))
    assert verified.approver.key == fingerprint(raw_public(KEYS["ben"]))
    assert verified.describe() == (
        f"proposed by ana ({verified.proposer.key}), approved by ben ({verified.approver.key})"
    )
    # a rotated key verifies too, as long as the file lists it under that name
    rotated = verify_approval(record("ana", "ben", proposer_key="ana-new"), TWO_KEYS_ONE_NAME)
    assert isinstance(rotated, VerifiedApproval)
    assert rotated.proposer.key == fingerprint(raw_public(KEYS["ana-new"]))


def test_a_deployment_that_requires_approval_asks_for_signatures_of_any_policy():
    assert approval_problem(record("ana", "ben"), PLAIN, PLAIN, True, APPROVERS) is None
    got = approval_problem(record("ana", "ben", signed=False), PLAIN, PLAIN, True, APPROVERS)
    assert got is not None and got.startswith("this deployment requires approval")
