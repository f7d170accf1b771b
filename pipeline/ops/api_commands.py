"""`tower api`: the agents' HTTP API as a document, for code generators and reviews."""

from __future__ import annotations

import click
import orjson

from pipeline.web.openapi import openapi_document


@click.group("api")
def api_group() -> None:
    """The agents' HTTP API (docs/agents.md)."""


@api_group.command("spec")
def spec_command() -> None:
    """Print the OpenAPI 3.1 document of /api/v1 (the one served at /api/v1/openapi.json)."""
    click.echo(orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2).decode())
