"""Signed four-eyes policy records for tests, made the way an outsider would verify them.

The signed message is written out here from its documented format
(`pipeline/contracts/policy_signatures.py`) rather than imported, so the tests pin the wire
format: an auditor re-implementing the check from the docs gets the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.core.policy_document import load_policy


def message(role: str, name: str, at: int, policy_version: str, document: str) -> bytes:
    digest = hashlib.sha256(document.encode()).hexdigest()
    return (
        "journey-tower policy signature v1\n"
        f"role: {role}\nname: {name}\nat: {at}\n"
        f"policy_version: {policy_version}\ndocument_sha256: {digest}\n"
    ).encode()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass
class Keyring:
    """One private key per person; `line`s make the approvers file."""

    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Ed25519PrivateKey:
        if name not in self.keys:
            self.keys[name] = Ed25519PrivateKey.generate()
        return self.keys[name]

    def line(self, name: str, key_of: str | None = None) -> str:
        """`name`'s approvers-file line, with the key of `key_of` (default: their own)."""
        return f"{name} {base64.b64encode(raw_public(self[key_of or name])).decode()}"

    def approvers_text(self, *names: str) -> str:
        return "# the approvers\n" + "".join(self.line(n) + "\n" for n in names)

    def approvers_file(self, path: Path, *names: str) -> Path:
        path.write_text(self.approvers_text(*names))
        return path

    def private_key_file(self, path: Path, name: str) -> Path:
        pem = self[name].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)
        return path


def sign(key: Ed25519PrivateKey, role: str, name: str, at: int, text: str) -> str:
    policy_version = load_policy(text).policy_version
    return base64.b64encode(key.sign(message(role, name, at, policy_version, text))).decode()


def signed_record_value(
    text: str,
    keyring: Keyring,
    proposed_by: str = "ana",
    approved_by: str = "ben",
    *,
    proposer_key: str | None = None,
    approver_key: str | None = None,
    at: int = 2,
) -> bytes:
    """An approved `active` record of `text`, each step signed with the key of the person
    named (or of `proposer_key` / `approver_key`: someone else's key, as a forger would)."""
    policy = load_policy(text)
    return orjson.dumps(
        {
            "version": policy.version,
            "policy_version": policy.policy_version,
            "content_hash": policy.content_hash,
            "document": text,
            "published_at": at,
            "published_by": approved_by,
            "proposed_by": proposed_by,
            "proposed_at": at - 1,
            "approved_by": approved_by,
            "approved_at": at,
            "proposal_signature": sign(
                keyring[proposer_key or proposed_by], "propose", proposed_by, at - 1, text
            ),
            "approval_signature": sign(
                keyring[approver_key or approved_by], "approve", approved_by, at, text
            ),
        },
        option=orjson.OPT_SORT_KEYS,
    )
