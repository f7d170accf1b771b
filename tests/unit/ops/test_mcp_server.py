"""`tower mcp` without a worker: every outcome tells the model what to do, a pending
decision says to send nothing, the HTTP transport binds loopback only unless told, and
the host configuration in examples/ starts it as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from journey_tower_client import Decision

from pipeline.core.decision import OUTCOMES
from pipeline.ops.mcp_commands import _loopback
from pipeline.ops.mcp_server import NEXT_STEP, decision_view

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_every_outcome_says_whether_to_send(outcome: str) -> None:
    view = decision_view(Decision("e", "c", "decided", outcome=outcome))
    sends = outcome in ("approved", "deferred")
    assert view["next_step"].startswith("send action") is sends, view["next_step"]


def test_a_signal_and_a_pending_decision_send_nothing() -> None:
    assert NEXT_STEP["recorded"].startswith("nothing to send")
    view = decision_view(Decision("e", "c", "pending"))
    assert view["next_step"].startswith("send nothing yet") and "get_decision" in view["next_step"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.7", False),
        ("tower", False),
    ],
)
def test_only_loopback_hosts_bind_without_allow_remote(host: str, loopback: bool) -> None:
    assert _loopback(host) is loopback


def test_the_host_configuration_starts_tower_mcp_with_the_environment_alone() -> None:
    config = json.loads((REPO / "examples" / "mcp-host.json").read_text())
    server = config["mcpServers"]["journey-tower"]
    assert [server["command"], *server["args"]] == ["tower", "mcp"]
    assert {"TOWER_URL", "TOWER_AGENT"} <= set(server["env"])
    assert "TOWER_TOKEN" not in server["env"]  # a secret file, not a token in a config file
