"""Four-eyes governance: the `governance:` block of a policy document, its effect on the
policy hash, and the pure rule deciding whether an `active` record may come into force."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.policy_record import PolicyRecord
from pipeline.core.policy import DEFAULT_POLICY, Governance, Policy
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.policy_governance import approval_problem, approval_required, same_person

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


def record(
    proposed_by: str | None = None, approved_by: str | None = None, approved: bool = True
) -> PolicyRecord:
    return PolicyRecord(
        version="1.0.0",
        policy_version="1.0.0+x",
        content_hash="x",
        document="version: 1.0.0\n",
        published_at=2,
        published_by=approved_by or proposed_by or "ana",
        proposed_by=proposed_by,
        proposed_at=1 if proposed_by else None,
        approved_by=approved_by,
        approved_at=2 if approved_by and approved else None,
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
    got = approval_problem(rec, in_force, new)
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
    accepted = approval_problem(rec, in_force, new) is None
    if not approval_required(in_force, new):
        assert accepted
    elif accepted:
        assert rec.proposed_by and rec.approved_by and rec.approved_at is not None
        assert rec.proposed_by.strip() and rec.approved_by.strip()
        assert not same_person(rec.proposed_by, rec.approved_by)
    else:
        assert not (
            rec.proposed_by
            and rec.proposed_by.strip()
            and rec.approved_by
            and rec.approved_by.strip()
            and rec.approved_at is not None
            and not same_person(rec.proposed_by, rec.approved_by)
        )
