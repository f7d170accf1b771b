"""`tower web token ...`: bearer tokens for the web pages and the agents' API.

`add` makes a random token, appends its hash to the tokens file (created with mode 0600)
and prints the token once: it is kept nowhere else. Workers read the file again when it
changes, so a new token works at once; deleting its line revokes it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from pipeline.ops.cli_errors import friendly_errors
from pipeline.web.auth import (
    LINE_FORMAT,
    ROLES,
    TokenFileError,
    load_tokens,
    new_token,
    token_line,
)

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
    """The web server's access: bearer tokens with a role (viewer or operator)."""


@web_group.group("token")
def token_group() -> None:
    """Create and list the tokens in the tokens file."""


@token_group.command("add")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer or operator.")
@click.option("--name", required=True, help="Whose token it is (A-Z a-z 0-9 . _ @ -).")
@file_option
@friendly_errors(TokenFileError, OSError)
def add_command(role: str, name: str, path: Path) -> None:
    """Create a token: its hash goes to the file, the token itself to stdout, once.

    \b
    viewer:   the pages, customer JSON, decisions, context (and /metrics, /healthz)
    operator: also preflight and anything that changes something
    """
    token = new_token()
    line = token_line(token, role, name)  # a bad name is refused before the file is touched
    append_token_line(path, line)
    article = "an" if role == "operator" else "a"
    click.echo(f"added {article} {role} token for {name} to {path}; shown only now:", err=True)
    click.echo(token)


@token_group.command("list")
@file_option
@friendly_errors(TokenFileError)
def list_command(path: Path) -> None:
    """The names and roles in the tokens file (never a token: the file has none)."""
    for entry in load_tokens(path):
        click.echo(f"{entry.principal.role:<9} {entry.principal.name}")


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
