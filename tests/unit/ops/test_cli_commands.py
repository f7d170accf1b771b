"""`tower` loads a command's module only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from pipeline.ops.cli import LAZY_COMMANDS, main


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_lazy_command_resolves_to_a_command_of_that_name(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_starting_the_cli_imports_no_other_command() -> None:
    """A worker's start must not pay for the console's database or the HTTP client."""
    probe = (
        "import sys, pipeline.ops.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('duckdb', 'pyarrow', "
        "'pipeline.console', 'pipeline.ops.', 'aiohttp', 'httpx', 'mcp')) "
        "and m != 'pipeline.ops.cli'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
