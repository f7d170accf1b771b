"""Ed25519 signatures on four-eyes policy changes, and the approvers file that trusts them.

Who proposed and who approved a change is a claim anyone with write access to the
`policies` topic can type. A signature binds the claim to a key: the proposer signs their
`propose` and the approver their `approve` of exactly this document, under the name they
give, at the time they give. Workers check each signature against the public keys of the
approvers file, so a name without its key proves nothing.

Pure: keys and files come in as bytes and text (the shell reads them), so the worker, the
CLI and the tests verify alike. The crypto lives here, with the wire format, because what
is signed *is* wire format; the rule of who must sign lives in
`pipeline.core.policy_governance`.

The signed message (UTF-8, one field a line, in this order)::

    journey-tower policy signature v1
    role: propose | approve
    name: <who, as written in the record>
    at: <epoch ms, the record's proposed_at / approved_at>
    policy_version: <policy_version>
    document_sha256: <sha256 hex of the document text>

The approvers file: one ``name base64-of-the-32-byte-ed25519-public-key`` a line; ``#``
starts a comment. A name may have several keys (rotation); a key may not serve two names,
since four eyes counts keys, not names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

Role = Literal["propose", "approve"]

MAGIC = "journey-tower policy signature v1"
KEY_BYTES = 32


class ApproversFileError(ValueError):
    """An approvers file that cannot be trusted as written; the message names the line."""


class KeyFileError(ValueError):
    """A private key file that is not an Ed25519 key in PEM."""


@dataclass(frozen=True, slots=True)
class ApproverKeys:
    """The public keys allowed to sign, by name (raw 32-byte Ed25519 keys)."""

    by_name: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", MappingProxyType(dict(self.by_name)))

    def keys_of(self, name: str) -> tuple[bytes, ...]:
        return self.by_name.get(name.strip(), ())

    def __bool__(self) -> bool:
        return bool(self.by_name)


NO_APPROVERS = ApproverKeys()


def signed_message(role: Role, name: str, at: int, policy_version: str, document: str) -> bytes:
    """The exact bytes a proposer or approver signs."""
    digest = hashlib.sha256(document.encode()).hexdigest()
    return (
        f"{MAGIC}\nrole: {role}\nname: {name}\nat: {at}\n"
        f"policy_version: {policy_version}\ndocument_sha256: {digest}\n"
    ).encode()


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    """The base64 signature of `message`, as stored in the record."""
    return base64.b64encode(private_key.sign(message)).decode()


def verifies(public_key: bytes, signature: str, message: bytes) -> bool:
    """True when `signature` (base64) is `public_key`'s signature of `message`."""
    try:
        raw = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, message)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def fingerprint(public_key: bytes) -> str:
    """A short name of a key for logs and audit records: `ed25519:` + 16 hex digits."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """The base64 public key, as written in the approvers file."""
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode()


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file's mode (0600) is what protects it."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, source: str) -> Ed25519PrivateKey:
    """The Ed25519 key in `pem`, or KeyFileError naming `source` and what to do."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{source}: not a PEM private key ({exc}); make one with `tower policy keygen`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"{source}: not an Ed25519 key ({type(key).__name__}); "
            "make one with `tower policy keygen`"
        )
    return key


def parse_approvers(text: str, source: str) -> ApproverKeys:
    """The approvers of a file's `text`; ApproversFileError naming every bad line."""
    by_name: dict[str, list[bytes]] = {}
    owner: dict[bytes, str] = {}
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            problems.append(f"{source}:{n}: expected `name ed25519-public-key-base64`")
            continue
        name, text_key = parts
        try:
            key = base64.b64decode(text_key, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            problems.append(f"{source}:{n}: {name}: not a base64 Ed25519 public key (32 bytes)")
            continue
        if key in owner and owner[key] != name:
            problems.append(
                f"{source}:{n}: {name}: the same key as {owner[key]} (one key, one person)"
            )
            continue
        owner[key] = name
        keys = by_name.setdefault(name, [])
        if key not in keys:
            keys.append(key)
    if problems:
        raise ApproversFileError("; ".join(problems))
    return ApproverKeys({name: tuple(keys) for name, keys in by_name.items()})
