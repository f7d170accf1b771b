"""`tower mcp` against a real worker, driven by the MCP SDK's own client session, over
stdio (the host starts the server) and streamable HTTP: the four tools, the policy
resource, and a proposal decided through them, as the agent the token is bound to."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.agent_worker import AGENT, AgentWorker, agent_worker
from tests.conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"get_customer_context", "preflight_action", "propose_action", "get_decision"}


@pytest.fixture(scope="module")
def tower(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentWorker]:
    with agent_worker(kafka_bootstrap, tmp_path_factory.mktemp("mcp")) as w:
        yield w


def server_env(tower: AgentWorker) -> dict[str, str]:
    """What a host's configuration gives the server (examples/mcp-host.json)."""
    return {**tower.env(), "TOWER_DEPARTMENT": "service", "PYTHONPATH": str(REPO)}


def tower_mcp(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.ops.cli", "mcp", *args]


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    data: dict[str, Any] = result.structured_content
    return data.get("result", data) if set(data) == {"result"} else data


async def walk_through(session: ClientSession, customer: str) -> None:
    """What a model does: list, read the policy, context, preflight, propose, decision."""
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    assert "BEFORE writing" in (tools["get_customer_context"].description or "")
    assert "BEFORE" in (tools["propose_action"].description or "")

    [policy] = (await session.read_resource("tower://policy")).contents
    summary = json.loads(policy.text)
    assert summary["policy_version"] and summary["quiet_hours"]["start"]
    assert "do not send" in summary["outcomes"]["suppressed"]

    ctx = structured(await session.call_tool("get_customer_context", {"customer_id": customer}))
    assert ctx["known"] is False and ctx["customer_id"] == customer
    draft = {
        "customer_id": customer,
        "channel": "chat",
        "action": "answer",
        "category": "service",
        "content": "Your parcel left the depot.",
    }
    advice = structured(await session.call_tool("preflight_action", draft))
    assert advice["outcome"] == "approved" and advice["advisory"] is True
    decided = structured(
        await session.call_tool("propose_action", {**draft, "event_id": f"{customer}-1"})
    )
    assert decided["status"] == "decided" and decided["outcome"] == "approved"
    assert decided["action"]["agents"] == [AGENT] and decided["next_step"].startswith("send")
    again = structured(
        await session.call_tool(
            "get_decision", {"event_id": f"{customer}-1", "customer_id": customer}
        )
    )
    assert again["audit_id"] == decided["audit_id"]

    refused = await session.call_tool("propose_action", {**draft, "channel": "fax"})
    assert refused.is_error and "channel" in refused.content[0].text


def run_session(transport: AbstractAsyncContextManager[Any], customer: str) -> None:
    async def main() -> None:
        async with transport as (read, write), ClientSession(read, write) as session:
            await walk_through(session, customer)

    anyio.run(main)


def test_the_tools_over_stdio(tower: AgentWorker) -> None:
    command, *args = tower_mcp()
    params = StdioServerParameters(command=command, args=args, env=server_env(tower), cwd=REPO)
    run_session(stdio_client(params), "mcp-stdio")


def test_the_tools_over_streamable_http(tower: AgentWorker, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "mcp.log").open("wb")
    server = subprocess.Popen(
        tower_mcp("--transport", "http", "--port", str(port)),
        env={**os.environ, **server_env(tower)},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "mcp.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "mcp.log").read_text()
                time.sleep(0.2)
        run_session(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), "mcp-http")
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_a_remote_bind_is_refused_without_allow_remote(tower: AgentWorker) -> None:
    done = subprocess.run(
        tower_mcp("--transport", "http", "--host", "0.0.0.0"),
        env={**os.environ, **server_env(tower)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "--allow-remote" in done.stderr
