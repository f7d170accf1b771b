"""The agents' API as an OpenAPI 3.1 document (`GET /api/v1/openapi.json`, `tower api
spec`), built from the JSON Schemas in schemas/ so the document and the validation the
server applies are one source: OpenAPI 3.1's schema objects are JSON Schema 2020-12."""

from __future__ import annotations

from functools import cache
from typing import Any

from pipeline.web.api_requests import schema

#: component name -> the schema's file in schemas/ (`<file>.v1.schema.json`)
COMPONENTS = {
    "ProposalRequest": "proposal_request",
    "SignalRequest": "signal_request",
    "Decision": "decision",
    "Pending": "pending",
    "Error": "api_error",
    "AgentContext": "agent_context",
    "Preflight": "preflight",
}
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(name)}}}
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _errors(*statuses: int) -> dict[str, Any]:
    described = {
        400: "invalid: `problems` lists every invalid field",
        401: "no token, or an unknown or expired one",
        403: "the token may not do this (an agent token naming another agent, or a role "
        "without the right)",
        404: "not known; `hint` says what to do",
        409: "the customer's stored state does not decode",
        415: "the body is not application/json",
        502: "the worker owning the customer was not trusted, or its answer was refused",
        503: "rebalancing, or the owner did not answer: retry after Retry-After",
    }
    headers = {
        401: {"WWW-Authenticate": _header('Bearer realm="journey-tower"')},
        503: {"Retry-After": _header("seconds to wait before retrying")},
    }
    return {str(s): _json("Error", described[s], headers.get(s)) for s in statuses}


COMMON_ERRORS = (400, 401, 403, 502, 503)
LOCATION = {"Location": _header("/api/v1/decisions/{event_id}?customer_id=...: ask it later")}
WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "seconds to wait for the decision before answering 202",
    "schema": {"type": "number", "minimum": 0, "maximum": 30, "default": 2},
}
STATUS = {
    "type": "object",
    "properties": {"status": {"type": "string"}},
    "required": ["status"],
}


def _ask(kind: str, request: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{kind}Decide",
            "summary": f"Ask and decide: submit a {kind} and wait for its decision",
            "description": f"Writes the {kind} to agent-events (keyed by customer) and answers "
            "with its final decision once the worker owning the customer made it, or 202 "
            "after `wait` seconds. A retry with the same event_id returns the same "
            "decision and never a second action.",
            "parameters": [WAIT],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
            "responses": {
                "200": _json("Decision", "decided"),
                "202": _json("Pending", "not decided within the wait", LOCATION),
                **_errors(*COMMON_ERRORS, 409, 415),
            },
        }
    }


def _component(name: str) -> dict[str, Any]:
    body = {k: v for k, v in schema(name).items() if k not in ("$schema", "$id")}
    return body


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Journey Tower agents' API",
            "version": "v1",
            "description": "Ask the tower before contacting a customer (docs/agents.md). "
            "Authenticate with `Authorization: Bearer <token>` (`tower web token add`).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/proposals": _ask("proposal", "ProposalRequest"),
            "/api/v1/signals": _ask("signal", "SignalRequest"),
            "/api/v1/decisions/{event_id}": {
                "get": {
                    "operationId": "getDecision",
                    "summary": "The decision on one event",
                    "parameters": [
                        {
                            "name": "event_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "customer_id",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": _json("Decision", "decided"),
                        "202": _json("Pending", "held by the policy, not decided yet", LOCATION),
                        **_errors(*COMMON_ERRORS, 404),
                    },
                }
            },
            "/api/v1/customers/{customer_id}/context": {
                "get": {
                    "operationId": "getContext",
                    "summary": "What the tower remembers about a customer, to ground a message",
                    "parameters": [
                        {
                            "name": "customer_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "at",
                            "in": "query",
                            "required": False,
                            "description": "epoch milliseconds the context is for [default: now]",
                            "schema": {"type": "integer"},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            "AgentContext",
                            "the customer's context; `known` false: the tower has not met "
                            "the customer, and this is the empty context the policy applies",
                        ),
                        **_errors(*COMMON_ERRORS, 409),
                    },
                }
            },
            "/api/v1/preflight": {
                "post": {
                    "operationId": "preflight",
                    "summary": "The decision the tower would make now; nothing is stored or sent",
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": _ref("ProposalRequest")}},
                    },
                    "responses": {
                        "200": _json("Preflight", "the advisory decision"),
                        **_errors(*COMMON_ERRORS, 409, 415),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "the OpenAPI 3.1 document",
                            "content": {JSON: {"schema": {"type": "object"}}},
                        },
                        **_errors(401, 403),
                    },
                }
            },
            "/readyz": _probe("readiness: 503 while starting, rebalancing or restoring"),
            "/livez": _probe("liveness: 503 when input waits and nothing is decided"),
        },
        "components": {
            "schemas": {name: _component(file) for name, file in COMPONENTS.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `tower web token add` (role agent, "
                    "viewer or operator)",
                }
            },
        },
    }


def _probe(summary: str) -> dict[str, Any]:
    answer = {"content": {JSON: {"schema": STATUS}}}
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": "ok", **answer},
                "503": {"description": "not ready or not live", **answer},
            },
        }
    }
