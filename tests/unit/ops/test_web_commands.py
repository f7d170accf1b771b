"""`tower web token add/list`: the token is printed once and only its hash is stored, in a
file created with mode 0600; a broken file is never appended to."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from pipeline.ops.cli import main
from pipeline.web.auth import hash_token, identify, load_tokens


def add(path: Path, role: str, name: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["web", "token", "add", "--role", role, "--name", name, "--file", str(path)]
    )
    return result.exit_code, result.stdout, result.stderr


def test_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "tokens"
    code, out, err = add(path, "viewer", "ana")
    assert code == 0, err
    token = out.strip()
    assert len(token) >= 43 and "\n" not in token  # 32 random bytes, URL-safe base64
    assert "shown only now" in err and token not in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    code, out, _ = add(path, "operator", "ops-bot")
    operator = out.strip()
    assert code == 0 and operator != token
    entries = load_tokens(path)
    assert [(e.principal.role, e.principal.name) for e in entries] == [
        ("viewer", "ana"),
        ("operator", "ops-bot"),
    ]
    assert identify(entries, operator).role == "operator"  # type: ignore[union-attr]
    listed = CliRunner().invoke(main, ["web", "token", "list", "--file", str(path)])
    assert listed.exit_code == 0 and listed.stdout.split() == [
        "viewer",
        "ana",
        "operator",
        "ops-bot",
    ]


def test_the_file_comes_from_tower_web_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    result = CliRunner().invoke(
        main,
        ["web", "token", "add", "--role", "viewer", "--name", "ana"],
        env={"TOWER_WEB_TOKENS_FILE": str(path)},
    )
    assert result.exit_code == 0 and hash_token(result.stdout.strip()) in path.read_text()


def test_a_bad_name_or_a_broken_file_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    code, out, err = add(path, "viewer", "two words")
    assert code == 1 and "name must be" in err and not out and not path.exists()
    path.write_text("my-plaintext-token viewer ana")  # no final newline either
    code, out, err = add(path, "viewer", "bo")
    assert code == 1 and f"{path}:1: the first field must be sha256" in err and not out
    assert "my-plaintext-token" not in err
    assert path.read_text() == "my-plaintext-token viewer ana"
    code, _, err = add(path, "admin", "bo")
    assert code == 2 and "admin" in err  # click's choice check


def test_a_line_is_appended_after_a_file_without_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{hash_token('t')} viewer ana")
    path.chmod(0o600)
    assert add(path, "viewer", "bo")[0] == 0
    assert [e.principal.name for e in load_tokens(path)] == ["ana", "bo"]


ADD = ("web", "token", "add", "--role")


def test_a_token_with_a_ttl_expires(tmp_path: Path) -> None:
    import time

    path = tmp_path / "tokens"
    result = CliRunner().invoke(
        main,
        [*ADD, "viewer", "--name", "temp", "--ttl", "30d", "--file", str(path)],
    )
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    (entry,) = load_tokens(path)
    assert entry.expires is not None and abs(entry.expires - (time.time() + 30 * 86400)) < 60
    assert "expiring" in result.stderr and "expires=" in path.read_text()
    assert identify((entry,), token) is not None
    assert identify((entry,), token, now=entry.expires + 1) is None
    listed = CliRunner().invoke(main, ["web", "token", "list", "--file", str(path)])
    assert "temp" in listed.stdout and "expires" in listed.stdout
    bad = CliRunner().invoke(
        main,
        [*ADD, "viewer", "--name", "x", "--ttl", "soon", "--file", str(path)],
    )
    assert bad.exit_code != 0 and "like 30d" in bad.output


def test_peer_key_new_writes_a_private_key_and_rotate_adds_one(tmp_path: Path) -> None:
    from pipeline.web.peer_assertion import load_keys

    path = tmp_path / "peer-key"
    first = CliRunner().invoke(main, ["web", "peer-key", "new", "--file", str(path)])
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (key,) = load_keys(path)
    again = CliRunner().invoke(main, ["web", "peer-key", "new", "--file", str(path)])
    assert again.exit_code != 0 and "--rotate" in again.output
    rotated = CliRunner().invoke(main, ["web", "peer-key", "new", "--rotate", "--file", str(path)])
    assert rotated.exit_code == 0, rotated.output
    keys = load_keys(path)
    assert len(keys) == 2 and keys[0] == key  # the old key still signs until moved
