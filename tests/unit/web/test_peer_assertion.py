"""The signed assertion a forwarded request carries instead of the caller's token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.web.peer_assertion import (
    TTL_S,
    AssertionRefused,
    Claims,
    PeerKeyError,
    PeerKeys,
    parse_keys,
    sign,
    verify,
)

KEY = b"k" * 64
OTHER = b"o" * 64
NOW = 1_800_000_000.0
REQUEST: dict[str, Any] = {
    "method": "GET",
    "path": "/api/v1/customers/ana/context?at=1",
    "body": b"",
    "audience": "http://127.0.0.1:6066",
}
WHO = Claims("ops-bot", "operator")


def assertion(**changes: Any) -> str:
    return sign(KEY, WHO, **{**REQUEST, "now": NOW, **changes})


def test_a_valid_assertion_names_the_caller_and_role() -> None:
    assert verify((KEY,), assertion(), **REQUEST, now=NOW + 1) == WHO
    assert verify((OTHER, KEY), assertion(), **REQUEST, now=NOW) == WHO  # any key verifies


def tampered(value: str) -> str:
    payload, mac = value.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return f"{flipped}.{mac}"


@pytest.mark.parametrize(
    ("value", "changes", "keys", "at", "why"),
    [
        (assertion(), {}, (KEY,), NOW + TTL_S + 0.01, "expired"),
        (assertion(now=NOW + 60), {}, (KEY,), NOW, "too far ahead"),
        (tampered(assertion()), {}, (KEY,), NOW, "signature"),
        (assertion().split(".")[0] + ".", {}, (KEY,), NOW, "signature"),
        ("garbage", {}, (KEY,), NOW, "signature"),
        ("", {}, (KEY,), NOW, "signature"),
        (assertion(), {}, (OTHER,), NOW, "signature"),
        (assertion(), {"path": "/api/v1/customers/bo/context?at=1"}, (KEY,), NOW, "path"),
        (assertion(), {"path": "/api/v1/customers/ana/context"}, (KEY,), NOW, "path"),
        (assertion(), {"method": "POST"}, (KEY,), NOW, "method"),
        (assertion(), {"body": b"{}"}, (KEY,), NOW, "body"),
        (assertion(), {"audience": "http://127.0.0.1:6067"}, (KEY,), NOW, "another worker"),
    ],
)
def test_a_bad_assertion_is_refused_saying_why(
    value: str, changes: dict[str, Any], keys: tuple[bytes, ...], at: float, why: str
) -> None:
    with pytest.raises(AssertionRefused, match=why):
        verify(keys, value, **{**REQUEST, **changes}, now=at)


def test_the_key_file_first_signs_all_verify_and_bad_files_are_refused(tmp_path: Path) -> None:
    assert parse_keys("# keys\n\n" + "a" * 32 + "\n" + "b" * 40 + "\n", "f") == (
        b"a" * 32,
        b"b" * 40,
    )
    for text, why in [
        ("", "holds no key"),
        ("short\n", "f:1: a peer key"),
        ("a" * 20 + " " + "b" * 20, "f:1"),
    ]:
        with pytest.raises(PeerKeyError, match=why):
            parse_keys(text, "f")
    with pytest.raises(PeerKeyError, match="TOWER_WEB_PEER_KEY_FILE"):
        PeerKeys(tmp_path / "missing")
    path = tmp_path / "key"
    path.write_text("a" * 32 + "\n")
    keys = PeerKeys(path)
    assert keys.keys() == (b"a" * 32,)
    path.write_text("a" * 32 + "\n" + "c" * 32 + "\n")  # rotation: a second key verifies too
    assert keys.keys() == (b"a" * 32, b"c" * 32)
    path.write_text("bad\n")  # a broken file keeps the last good keys
    assert keys.keys() == (b"a" * 32, b"c" * 32)
    assert "a" * 32 not in repr(keys.__dict__.get("path"))
