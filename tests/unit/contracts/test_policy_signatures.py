"""The signed message of a four-eyes step, Ed25519 signing and verifying, and the approvers
file: what a worker trusts, and every line it refuses."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.policy_signatures import (
    ApproversFileError,
    KeyFileError,
    fingerprint,
    load_private_key,
    new_private_key,
    parse_approvers,
    private_key_pem,
    public_key_bytes,
    public_key_text,
    sign,
    signed_message,
    verifies,
)
from tests.policy_signing import Keyring, message, raw_public

KEYS = Keyring()


def test_the_signed_message_is_the_documented_one():
    assert signed_message("approve", "ben", 7, "1.0.0+ab", "version: 1.0.0\n") == message(
        "approve", "ben", 7, "1.0.0+ab", "version: 1.0.0\n"
    )
    assert signed_message("propose", "ana", 1, "v", "d").decode().splitlines() == [
        "journey-tower policy signature v1",
        "role: propose",
        "name: ana",
        "at: 1",
        "policy_version: v",
        "document_sha256: 18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4",
    ]


@given(st.sampled_from(["propose", "approve"]), st.text(), st.integers(0, 2**62), st.text())
def test_a_signature_verifies_only_for_its_key_and_message(role, name, at, document):
    key, other = KEYS["ana"], KEYS["ben"]
    msg = signed_message(role, name, at, "1.0.0+ab", document)
    sig = sign(key, msg)
    assert verifies(public_key_bytes(key), sig, msg)
    assert not verifies(public_key_bytes(other), sig, msg)
    assert not verifies(public_key_bytes(key), sig, msg + b"x")
    flipped = "approve" if role == "propose" else "propose"
    assert not verifies(
        public_key_bytes(key), sig, signed_message(flipped, name, at, "1.0.0+ab", document)
    )


@pytest.mark.parametrize("signature", ["", "!!", "AAAA", base64.b64encode(b"x" * 64).decode()])
def test_garbage_signatures_do_not_verify(signature):
    assert not verifies(raw_public(KEYS["ana"]), signature, b"m")


def test_a_private_key_round_trips_through_pem():
    key = new_private_key()
    again = load_private_key(private_key_pem(key), "k.pem")
    assert public_key_text(again) == public_key_text(key)
    assert fingerprint(public_key_bytes(key)).startswith("ed25519:")
    assert len(fingerprint(public_key_bytes(key))) == len("ed25519:") + 16


def test_a_key_file_that_is_not_an_ed25519_key_is_refused():
    with pytest.raises(KeyFileError, match=r"k\.pem: not a PEM private key.*tower policy keygen"):
        load_private_key(b"hello", "k.pem")


def test_the_approvers_file_reads_names_keys_and_comments():
    text = (
        "# who may sign policy changes\n"
        "\n"
        f"{KEYS.line('ana')}   # security team\n"
        f"  {KEYS.line('ben')}\n"
        f"{KEYS.line('ana', key_of='ana-new')}\n"  # rotation: a second key for ana
        f"{KEYS.line('ben')}\n"  # the same line twice is one key
    )
    approvers = parse_approvers(text, "approvers")
    assert approvers.keys_of("ana") == (raw_public(KEYS["ana"]), raw_public(KEYS["ana-new"]))
    assert approvers.keys_of(" ben ") == (raw_public(KEYS["ben"]),)
    assert approvers.keys_of("carol") == ()
    assert bool(approvers) and not parse_approvers("# nobody yet\n", "a")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("ana", "approvers:2: expected `name ed25519-public-key-base64`"),
        ("ana key extra", "approvers:2: expected `name"),
        ("ana not-base64!", "approvers:2: ana: not a base64 Ed25519 public key (32 bytes)"),
        (f"ana {base64.b64encode(b'short').decode()}", "not a base64 Ed25519 public key"),
        # one person, two names: four eyes count keys, so one key may not serve two names
        (
            KEYS.line("ana2", key_of="ben"),
            "approvers:2: ana2: the same key as ben (one key, one person)",
        ),
    ],
)
def test_a_bad_approvers_line_is_refused_with_its_line(line, problem):
    with pytest.raises(ApproversFileError) as err:
        parse_approvers(f"{KEYS.line('ben')}\n{line}\n", "approvers")
    assert problem in str(err.value)
    assert "\n" not in str(err.value)
