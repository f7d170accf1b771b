"""Wire format of the compacted `policies` topic (one partition, so one total order).

Keys (UTF-8):

* ``active`` -- the policy in force now. Workers follow this key; compaction keeps its
  latest value, so a worker starting tomorrow still finds it.
* ``version/<policy_version>`` -- every version ever put in force, e.g.
  ``version/1.2.0+3f9a0c1b2d4e``. Compaction keeps one record per version, so replaying an
  old audit record can look up the exact policy that made the decision.
* ``pending/<policy_version>`` -- a proposed change waiting for a second person (four-eyes
  governance, `governance.require_approval`). Workers and replay never read it. Approving
  writes ``version/<v>`` and ``active`` and then a tombstone (null value) on the pending
  key; rejecting writes only the tombstone. So a live ``pending/`` key is always an open
  proposal, and who rejected what, and why, lives in the `policy_rejected` audit record
  rather than on this topic (compaction would drop a rejection marker's history anyway).

Value: a JSON object ::

    {"version": "1.2.0", "policy_version": "1.2.0+3f9a0c1b2d4e",
     "content_hash": "<sha256 hex>", "document": "<the YAML text as published>",
     "published_at": <epoch ms>, "published_by": "<who>",
     "proposed_by": "<who>", "proposed_at": <epoch ms>,     # optional, four-eyes only
     "approved_by": "<who>", "approved_at": <epoch ms>,     # optional, four-eyes only
     "proposal_signature": "<base64>",                      # optional, signed changes
     "approval_signature": "<base64>"}                      # optional, signed changes

`published_at`/`published_by` say when and by whom the record was written: the proposer
on a pending record, the approver on an approved one. The optional fields are absent
(never null) from a plain `publish`, so such records are byte-for-byte what they were before
governance existed, and older records decode unchanged. The two signatures are Ed25519
signatures of the proposer's and the approver's step (`pipeline.contracts.policy_signatures`
says what is signed); workers verify them against the approvers file.

The document is the source of truth: a reader validates it with `load_policy` and checks
that it still hashes to `policy_version`, so a stale or hand-written record cannot slip in
a policy other than the one it names. The names count only with their signatures: the
topic's write ACL decides who can produce at all; the verified signatures decide whether
two people agreed to what is produced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

ACTIVE_KEY = b"active"
VERSION_PREFIX = b"version/"
PENDING_PREFIX = b"pending/"

_FIELDS: dict[str, type] = {
    "version": str,
    "policy_version": str,
    "content_hash": str,
    "document": str,
    "published_at": int,
    "published_by": str,
}
#: added with four-eyes governance; absent in older records and in plain publishes
_OPTIONAL: dict[str, type] = {
    "proposed_by": str,
    "proposed_at": int,
    "approved_by": str,
    "approved_at": int,
    "proposal_signature": str,
    "approval_signature": str,
}


class InvalidPolicyRecord(ValueError):
    """A `policies` value that is not a policy record (not JSON, missing or mistyped fields)."""


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    version: str
    policy_version: str
    content_hash: str
    document: str
    published_at: int
    published_by: str
    proposed_by: str | None = None
    proposed_at: int | None = None
    approved_by: str | None = None
    approved_at: int | None = None
    proposal_signature: str | None = None
    approval_signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields; unset optional ones are left out, as older records have them."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in _OPTIONAL}


def version_key(policy_version: str) -> bytes:
    return VERSION_PREFIX + policy_version.encode()


def pending_key(policy_version: str) -> bytes:
    return PENDING_PREFIX + policy_version.encode()


def encode_policy_record(record: PolicyRecord) -> bytes:
    return orjson.dumps(record.to_dict(), option=orjson.OPT_SORT_KEYS)


def decode_policy_record(value: bytes | None) -> PolicyRecord:
    """The record in `value`, or InvalidPolicyRecord saying what is wrong with it."""
    if not value:
        raise InvalidPolicyRecord("empty value (a tombstone?); expected a JSON policy record")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidPolicyRecord(f"value is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise InvalidPolicyRecord(f"value must be a JSON object, got {type(data).__name__}")
    problems = [
        f"{name} must be {kind.__name__}, got {type(data.get(name)).__name__}"
        for name, kind in _FIELDS.items()
        if type(data.get(name)) is not kind
    ]
    problems += [
        f"{name} must be {kind.__name__} or absent, got {type(data[name]).__name__}"
        for name, kind in _OPTIONAL.items()
        if data.get(name) is not None and type(data[name]) is not kind
    ]
    if problems:
        raise InvalidPolicyRecord("; ".join(problems))
    fields: dict[str, Any] = {name: data.get(name) for name in (*_FIELDS, *_OPTIONAL)}
    return PolicyRecord(**fields)
