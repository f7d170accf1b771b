"""The four-eyes fields of policy records: optional, absent from plain publishes, and old
records still decode."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.policy_record import (
    PENDING_PREFIX,
    VERSION_PREFIX,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
    pending_key,
    version_key,
)

#: a record exactly as `tower policy publish` wrote it before governance existed
OLD = (
    b'{"content_hash":"ab","document":"version: 1.0.0\\n","policy_version":"1.0.0+ab",'
    b'"published_at":1767225600000,"published_by":"alice","version":"1.0.0"}'
)
PLAIN = PolicyRecord("1.0.0", "1.0.0+ab", "ab", "version: 1.0.0\n", 1_767_225_600_000, "alice")
APPROVED = PolicyRecord(
    "1.0.0",
    "1.0.0+ab",
    "ab",
    "version: 1.0.0\n",
    1_767_225_700_000,
    "ben",
    proposed_by="ana",
    proposed_at=1_767_225_600_000,
    approved_by="ben",
    approved_at=1_767_225_700_000,
)


def test_an_old_record_decodes_with_no_approval():
    rec = decode_policy_record(OLD)
    assert rec == PLAIN
    assert (rec.proposed_by, rec.proposed_at, rec.approved_by, rec.approved_at) == (None,) * 4


def test_a_plain_record_encodes_as_before():
    assert encode_policy_record(PLAIN) == OLD


@pytest.mark.parametrize("rec", [PLAIN, APPROVED])
def test_records_round_trip(rec):
    assert decode_policy_record(encode_policy_record(rec)) == rec


def test_an_approved_record_carries_both_names():
    data = orjson.loads(encode_policy_record(APPROVED))
    assert {k: data[k] for k in ("proposed_by", "approved_by", "published_by")} == {
        "proposed_by": "ana",
        "approved_by": "ben",
        "published_by": "ben",
    }


def test_explicit_nulls_read_as_absent():
    value = OLD[:-1] + b',"approved_by":null,"approved_at":null}'
    assert decode_policy_record(value) == PLAIN


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (b'"approved_by":7', "approved_by must be str or absent, got int"),
        (b'"approved_at":"noon"', "approved_at must be int or absent, got str"),
        (b'"approved_at":true', "approved_at must be int or absent, got bool"),
        (b'"proposed_by":["ana"]', "proposed_by must be str or absent, got list"),
        (b'"approval_signature":1', "approval_signature must be str or absent, got int"),
    ],
)
def test_mistyped_approval_fields_are_refused(extra, expected):
    with pytest.raises(InvalidPolicyRecord, match=expected):
        decode_policy_record(OLD[:-1] + b"," + extra + b"}")


def test_pending_keys_are_never_version_keys():
    key = pending_key("1.2.0+3f9a0c1b2d4e")
    assert key == b"pending/1.2.0+3f9a0c1b2d4e" and key.startswith(PENDING_PREFIX)
    assert not key.startswith(VERSION_PREFIX) and key != version_key("1.2.0+3f9a0c1b2d4e")


maybe_name = st.one_of(st.none(), st.text())
maybe_ms = st.one_of(st.none(), st.integers(min_value=0, max_value=2**62))


@given(
    st.builds(
        PolicyRecord,
        version=st.text(),
        policy_version=st.text(),
        content_hash=st.text(),
        document=st.text(),
        published_at=st.integers(min_value=0, max_value=2**62),
        published_by=st.text(),
        proposed_by=maybe_name,
        proposed_at=maybe_ms,
        approved_by=maybe_name,
        approved_at=maybe_ms,
        proposal_signature=maybe_name,
        approval_signature=maybe_name,
    )
)
def test_every_record_round_trips_and_leaves_unset_fields_out(rec):
    value = encode_policy_record(rec)
    assert decode_policy_record(value) == rec
    assert None not in orjson.loads(value).values()
