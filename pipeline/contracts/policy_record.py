"""Wire format of the compacted `policies` topic (one partition, so one total order).

Keys (UTF-8):

* ``active`` -- the policy in force now. Workers follow this key; compaction keeps its
  latest value, so a worker starting tomorrow still finds it.
* ``version/<policy_version>`` -- every version ever published, e.g.
  ``version/1.2.0+3f9a0c1b2d4e``. Compaction keeps one record per version, so replaying an
  old audit record can look up the exact policy that made the decision.

Value: a JSON object ::

    {"version": "1.2.0", "policy_version": "1.2.0+3f9a0c1b2d4e",
     "content_hash": "<sha256 hex>", "document": "<the YAML text as published>",
     "published_at": <epoch ms>, "published_by": "<who>"}

The document is the source of truth: a reader validates it with `load_policy` and checks
that it still hashes to `policy_version`, so a stale or hand-written record cannot slip in
a policy other than the one it names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

ACTIVE_KEY = b"active"
VERSION_PREFIX = b"version/"

_FIELDS: dict[str, type] = {
    "version": str,
    "policy_version": str,
    "content_hash": str,
    "document": str,
    "published_at": int,
    "published_by": str,
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_key(policy_version: str) -> bytes:
    return VERSION_PREFIX + policy_version.encode()


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
    if problems:
        raise InvalidPolicyRecord("; ".join(problems))
    return PolicyRecord(**{name: data[name] for name in _FIELDS})
