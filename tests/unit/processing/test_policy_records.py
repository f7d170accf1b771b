"""Audit records of policy governance fit the decision schema and name both people."""

from __future__ import annotations

import pytest

from pipeline.contracts.codec import decode_record, encode_record
from pipeline.contracts.events import Source
from pipeline.core.policy_governance import Signer, VerifiedApproval
from pipeline.processing.records import (
    policy_applied_record,
    policy_change_record,
    policy_review_record,
)

SRC = Source("policies", 0, 7, 1000)
SIGNED = VerifiedApproval(Signer("ana", "ed25519:aaaa"), Signer("ben", "ed25519:bbbb"))


def applied(worker: str) -> dict:
    return policy_applied_record(SIGNED, "a", "b", worker, 1100, SRC, '{"signed": 1}')


def change(proposed_by: str | None) -> dict:
    return policy_change_record(
        "policy a -> b: x: 1 -> 2", ["x: 1 -> 2"], "a", "b", "ben", 1000, SRC, "{}", proposed_by
    )


@pytest.mark.parametrize(
    ("record", "outcome", "agent", "verdicts", "in_reason"),
    [
        (change(None), "policy_changed", "ben", ["change"], "policy a -> b: x: 1 -> 2"),
        (
            change("ana"),
            "policy_changed",
            "ben",
            ["propose", "approve", "change"],
            "[proposed by ana, approved by ben]",
        ),
        (
            policy_review_record(
                "policy_proposed", "b", "ana", "ana", 900, "proposed", ["x: 1 -> 2"], SRC, "{}"
            ),
            "policy_proposed",
            "ana",
            ["propose", "change"],
            "proposed",
        ),
        (
            policy_review_record(
                "policy_rejected", "b", "ana", "ben", 950, "rejected by ben: no", [], SRC, "{}"
            ),
            "policy_rejected",
            "ben",
            ["propose", "reject"],
            "rejected by ben",
        ),
        (
            applied("tower@http://w1:6066"),
            "policy_applied",
            "tower@http://w1:6066",
            ["propose", "approve"],
            "verified: proposed by ana (ed25519:aaaa), approved by ben (ed25519:bbbb)",
        ),
        (
            policy_applied_record(None, "a", "b", "tower@w1", 1100, SRC, "{}", "ben"),
            "policy_applied",
            "tower@w1",
            ["published"],
            "published by ben without four-eyes approval",
        ),
    ],
)
def test_governance_audit_records(record, outcome, agent, verdicts, in_reason):
    for fmt in ("avro", "json"):  # the schema is unchanged: these are ordinary audit records
        assert decode_record("audit_record", encode_record("audit_record", record, fmt)) == record
    assert (record["outcome"], record["agent"], record["kind"]) == (outcome, agent, "policy")
    assert [s["verdict"] for s in record["trace"]] == verdicts
    assert in_reason in record["reason"]
    assert record["customer_id"] == "-" and record["event_id"] == "policy:b"


def test_a_plain_change_record_is_as_before():
    assert change(None)["reason"] == "policy a -> b: x: 1 -> 2"
    assert change(None)["decision_id"] == change("ana")["decision_id"]  # same change, same id


def test_review_steps_have_their_own_ids():
    ids = {
        policy_review_record(o, "b", "ana", "ben", at, "r", [], SRC, "{}")["decision_id"]
        for o in ("policy_proposed", "policy_rejected")
        for at in (1, 2)
    }
    assert len(ids) == 4


def test_the_applied_record_names_the_keys_and_each_worker_writes_its_own():
    record = applied("tower@http://w1:6066")
    assert [t["reason"] for t in record["trace"]] == ["ana ed25519:aaaa", "ben ed25519:bbbb"]
    assert record["input"] == '{"signed": 1}'  # the signed record, to verify again
    assert record["reason"].startswith("policy a -> b in force on tower@http://w1:6066; ")
    assert record["decision_id"] != applied("tower@http://w2:6066")["decision_id"]
    assert record["decision_id"] not in {change("ana")["decision_id"], change(None)["decision_id"]}
