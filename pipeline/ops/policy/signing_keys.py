"""Operators' Ed25519 signing keys: made by `keygen`, read from `--key`, checked against the
approvers file before anything is written that every worker would refuse."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.contracts.policy_signatures import (
    ApproverKeys,
    fingerprint,
    load_private_key,
    new_private_key,
    private_key_pem,
    public_key_bytes,
    public_key_text,
)
from pipeline.ops.policy.errors import PolicyCommandError


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An operator's private key, read from `--key` / TOWER_POLICY_KEY_FILE."""

    key: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> bytes:
        return public_key_bytes(self.key)


def read_key(path: Path) -> SigningKey:
    """The private key at `path`; refused if others may read it (like ssh does)."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise PolicyCommandError(f"--key {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PolicyCommandError(
            f"--key {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
            f"run `chmod 600 {path}`"
        )
    return SigningKey(load_private_key(pem, str(path)), path)


def signer_name(by: str | None, key: SigningKey | None, approvers: ApproverKeys) -> str | None:
    """The name the key is listed under in the approvers file, when `--by` is not given."""
    if by is not None or key is None:
        return by
    names = [n for n, keys in approvers.by_name.items() if key.public in keys]
    return names[0] if names else None


def check_key_is_theirs(name: str, key: SigningKey, approvers: ApproverKeys) -> None:
    """Fail before writing what every worker would refuse: a key not listed under `name`."""
    if not approvers:
        return
    if key.public in approvers.keys_of(name):
        return
    owners = [n for n, keys in approvers.by_name.items() if key.public in keys]
    if owners:
        raise PolicyCommandError(
            f"--key {key.path} is {owners[0]}'s key in the approvers file, not {name}'s: "
            f"sign with your own key, or pass --by {owners[0]} if you are {owners[0]}"
        )
    raise PolicyCommandError(
        f"--key {key.path} ({fingerprint(key.public)}) is not {name}'s in the approvers file "
        f"{key_listing_hint(name, key)}"
    )


def key_listing_hint(name: str, key: SigningKey) -> str:
    return f"(add `{name} {public_key_text(key.key)}` to TOWER_POLICY_APPROVERS_FILE)"


@dataclass(frozen=True, slots=True)
class NewKey:
    private: Path
    public: Path
    line: str


def keygen(name: str, out: Path) -> NewKey:
    """A new Ed25519 key pair for `name`: `out/NAME.key` (mode 0600, never overwritten)
    and `out/NAME.pub`, the line to add to the approvers file."""
    name = name.strip()
    if not name or any(c.isspace() for c in name) or "#" in name:
        raise PolicyCommandError(f"--name {name!r}: one word, no spaces or #, e.g. ana")
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{name}.key", out / f"{name}.pub"
    key = new_private_key()
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PolicyCommandError(
            f"{private} exists: keep it, or move it away to make a new key"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    line = f"{name} {public_key_text(key)}"
    public.write_text(line + "\n", encoding="utf-8")
    return NewKey(private, public, line)
