"""`tower mcp`: the MCP server for LLM hosts (pipeline/ops/mcp_server.py), over stdio or
streamable HTTP. The SDK is the `mcp` extra, imported only when the command runs."""

from __future__ import annotations

import ipaddress

import click

#: hosts the HTTP transport may bind: the server carries the agent's token, so it is for
#: this machine's hosts only unless --allow-remote says otherwise
LOOPBACK = ("localhost",)


@click.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio (the host starts this process) or streamable HTTP (at /mcp).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: the address to bind.")
@click.option("--port", default=8765, show_default=True, help="HTTP: the port.")
@click.option(
    "--allow-remote", is_flag=True, help="HTTP: bind a non-loopback address (no auth of its own)."
)
def mcp_command(transport: str, host: str, port: int, allow_remote: bool) -> None:
    """Serve the tower's tools to an LLM host over MCP (docs/agents.md, MCP).

    It calls the workers over HTTP as one agent: TOWER_URL, TOWER_TOKEN (or
    TOWER_TOKEN_FILE), TOWER_AGENT and TOWER_DEPARTMENT come from the environment.
    """
    try:
        from pipeline.ops.mcp_server import build_server
    except ImportError as exc:
        raise click.ClickException(
            f"tower mcp needs the MCP SDK ({exc.name} is missing): pip install 'journey-tower[mcp]'"
        ) from None
    from journey_tower_client import Config, TowerError

    try:
        config = Config.from_env()
    except TowerError as exc:
        raise click.ClickException(str(exc)) from None
    if transport == "http" and not (_loopback(host) or allow_remote):
        raise click.ClickException(
            f"--host {host} is not a loopback address: the MCP endpoint has no authentication "
            "of its own and acts with TOWER_TOKEN; pass --allow-remote behind a proxy that "
            "authenticates"
        )
    server = build_server(config)
    if transport == "stdio":
        server.run("stdio")
    else:
        click.echo(f"MCP over streamable HTTP at http://{host}:{port}/mcp", err=True)
        server.run("streamable-http", host=host, port=port)


def _loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
