"""Checks answers of the agents' API against its OpenAPI document, with jsonschema: the
status must be documented for the route and method, and the body must match its schema."""

from __future__ import annotations

from typing import Any

import jsonschema

from pipeline.web.openapi import openapi_document


class OpenApiCheck:
    """Validates answers and remembers which (route, method, status) were seen."""

    def __init__(self) -> None:
        self.document = openapi_document()
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(
        self,
        route: str,
        method: str,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        operations = self.document["paths"][route]
        responses = operations[method.lower()]["responses"]
        assert str(status) in responses, f"{method} {route} answered {status}: not documented"
        answer = responses[str(status)]
        schema = answer["content"]["application/json"]["schema"]
        # a $ref into the document's components resolves against the root it sits in
        jsonschema.Draft202012Validator(
            {**schema, "components": self.document["components"]}
        ).validate(body)
        for name in answer.get("headers", {}):
            assert name in (headers or {}), f"{method} {route} {status}: no {name} header"
        self.seen.add((route, method.upper(), status))
