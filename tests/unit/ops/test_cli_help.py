"""The help texts show the defaults the settings give, never a copy of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.ops.cli import main
from pipeline.settings import Settings

DEFAULTS = Settings()
OPS = Path(__file__).resolve().parents[3] / "pipeline" / "ops"


def help_text(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # one line: wrapping never splits what we look for


@pytest.mark.parametrize(
    ("option", "default", "envvar"),
    [
        ("--bootstrap", DEFAULTS.bootstrap, "TOWER_BOOTSTRAP"),
        ("--web-port", str(DEFAULTS.web_port), "TOWER_WEB_PORT"),
        ("--data-dir", str(DEFAULTS.data_dir), "TOWER_DATA_DIR"),
        ("--policy", "the built-in policy", "TOWER_POLICY_FILE"),
        ("--runtime", DEFAULTS.runtime, "TOWER_RUNTIME"),
    ],
)
def test_worker_help_shows_each_default_and_its_variable(option, default, envvar):
    options = help_text("worker").partition("Options:")[2]
    shown = re.search(rf"{re.escape(option)}\b.*?\[((?:env var|default): [^\]]*)\]", options)
    assert shown is not None, options
    assert default in shown.group(1) and envvar in shown.group(1), shown.group(0)


def test_the_top_level_help_shows_the_settings_defaults():
    text = help_text()
    assert f"127.0.0.1:{DEFAULTS.kafka_port}" in text
    assert f"http://{DEFAULTS.web_host}:{DEFAULTS.web_port}/metrics" in text


@pytest.mark.parametrize("literal", [str(DEFAULTS.kafka_port), str(DEFAULTS.web_port)])
def test_no_command_hard_codes_a_default_port(literal):
    """A changed default shows in every help text at once: they all read it from Settings."""
    copies = [
        f"{path.name}:{n}"
        for path in sorted(OPS.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(rf"(?<![\d.]){literal}(?!\d)", line)
    ]
    assert copies == []
