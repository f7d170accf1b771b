"""`tower web token ...`: bearer tokens for the web pages and the agents' API.

`add` makes a random token, appends its hash to the tokens file (created with mode 0600)
and prints the token once: it is kept nowhere else. Workers read the file again when it
changes, so a new token works at once; deleting its line revokes it; `--ttl` makes it
expire by itself.

`peer-key new` writes the key the workers sign forwarded requests with (one file, the same
on every worker).
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import click

from pipeline.ops.cli_errors import friendly_errors
from pipeline.web.auth import (
    LINE_FORMAT,
    ROLES,
    TokenFileError,
    format_expiry,
    load_tokens,
    new_token,
    token_line,
)
from pipeline.web.peer_assertion import PeerKeyError, load_keys, new_key

HEADER = f"""\
# Journey Tower web tokens: one a line, `{LINE_FORMAT}`.
# Hashes only (SHA-256 of the token); add with `tower web token add`, delete a line to revoke.
"""

file_option = click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="TOWER_WEB_TOKENS_FILE",
    required=True,
    help="The tokens file [default: TOWER_WEB_TOKENS_FILE].",
)


@click.group("web")
def web_group() -> None:
    """The web server's access: bearer tokens with a role (viewer, operator or agent)."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """Seconds of a duration like 30d, 12h, 90m or 3600s."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match is None or int(match[1]) == 0:
        raise click.BadParameter(f"{text!r}: a positive number with s, m, h or d, like 30d")
    return int(match[1]) * _UNITS[match[2]]


@web_group.group("token")
def token_group() -> None:
    """Create and list the tokens in the tokens file."""


@token_group.command("add")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer, operator or agent.")
@click.option(
    "--name",
    required=True,
    help="Whose token it is (A-Z a-z 0-9 . _ @ -); for an agent token, the agent's name.",
)
@click.option(
    "--ttl",
    default=None,
    help="Refused after this long (30d, 12h, 90m, 3600s) [default: never expires].",
)
@file_option
@friendly_errors(TokenFileError, OSError)
def add_command(role: str, name: str, ttl: str | None, path: Path) -> None:
    """Create a token: its hash goes to the file, the token itself to stdout, once.

    \b
    viewer:   the pages, customer JSON, decisions, context (and /metrics, /healthz)
    operator: also preflight and anything that changes something
    agent:    the agents' API only (context, preflight, proposals, signals,
              decisions), proposing and signalling as the agent NAME only
    """
    expires = None if ttl is None else time.time() + parse_ttl(ttl)
    token = new_token()
    # a bad name is refused before the file is touched
    line = token_line(token, role, name, expires)
    append_token_line(path, line)
    article = "a" if role == "viewer" else "an"
    until = "" if expires is None else f", expiring {format_expiry(expires)}"
    click.echo(
        f"added {article} {role} token for {name}{until} to {path}; shown only now:", err=True
    )
    click.echo(token)


@token_group.command("list")
@file_option
@friendly_errors(TokenFileError)
def list_command(path: Path) -> None:
    """The names and roles in the tokens file (never a token: the file has none)."""
    now = time.time()
    for entry in load_tokens(path):
        line = f"{entry.principal.role:<9} {entry.principal.name}"
        if entry.expires is not None:
            state = "expired" if entry.expires <= now else "expires"
            line += f"  ({state} {format_expiry(entry.expires)})"
        click.echo(line)


def append_token_line(path: Path, line: str) -> None:
    """Append to the tokens file, creating it with mode 0600; an existing file is checked
    first, so a line is never added to a file the workers would refuse."""
    if path.exists():
        load_tokens(path)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            click.echo(f"note: {path} is readable by others (chmod 600 it)", err=True)
        data = path.read_bytes()
        text = ("\n" if data and not data.endswith(b"\n") else "") + line
        flags = os.O_WRONLY | os.O_APPEND
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = HEADER + line
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@web_group.group("peer-key")
def peer_key_group() -> None:
    """The key workers sign forwarded requests with (TOWER_WEB_PEER_KEY_FILE)."""


@peer_key_group.command("new")
@click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="TOWER_WEB_PEER_KEY_FILE",
    required=True,
    help="The key file [default: TOWER_WEB_PEER_KEY_FILE].",
)
@click.option(
    "--rotate",
    is_flag=True,
    help="Add the new key after the keys in the file: every worker verifies it, none signs yet.",
)
@friendly_errors(PeerKeyError, OSError)
def peer_key_new(path: Path, rotate: bool) -> None:
    """Write a new random key (mode 0600); give every worker the same file.

    \b
    Without --rotate an existing file is refused. To rotate without a failed request:
    1. `--rotate`, and give every worker the file: all of them verify the new key;
    2. move the new key to the first line everywhere: it signs, the old one still verifies;
    3. once every worker has that file, delete the old key's line.
    Workers read the file again when it changes.
    """
    old: tuple[bytes, ...] = ()
    if path.exists():
        if not rotate:
            raise click.ClickException(f"{path} exists: pass --rotate to add a key to it")
        old = load_keys(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(k.decode() + "\n" for k in (*old, new_key().encode()))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# Journey Tower peer keys: the first signs, every one verifies.\n" + text)
    os.replace(tmp, path)
    click.echo(f"wrote a new peer key to {path} ({len(old)} older keys kept)", err=True)
