"""The bodies of the agents' API requests: every problem of a body at once, then the
event as the workers will decode it.

A body is checked first by the codec the workers decode `agent-events` with (fast, and
the authority on what is accepted); only a body it refuses is checked against the
request's JSON Schema (schemas/*_request.v1.schema.json) to list every invalid field,
so an agent fixes its request in one round.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.events import AgentEvent

KINDS = ("proposal", "signal")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidRequest(Exception):
    """A request the API refuses (400): every problem found, and a one-line summary."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        if len(problems) == 1:
            only = problems[0]
            line = f"{only.field} {only.message}" if only.field else only.message
        else:
            fields = ", ".join(dict.fromkeys(p.field or "(body)" for p in problems))
            line = f"{len(problems)} problems, in {fields}: problems lists each"
        super().__init__(line)
        self.detail = line


@cache
def schema(name: str) -> dict[str, Any]:
    """A JSON Schema of schemas/ (`name`.v1.schema.json), as the package carries it."""
    text = resources.files("pipeline.schemas").joinpath(f"{name}.v1.schema.json").read_bytes()
    loaded: dict[str, Any] = orjson.loads(text)
    return loaded


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(f"{kind}_request"))


def parse_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or InvalidRequest."""
    if len(raw) > max_bytes:
        raise InvalidRequest([Problem("", f"the body is {len(raw)} bytes; at most {max_bytes}")])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([Problem("", f"the body is not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise InvalidRequest([Problem("", "the body must be a JSON object")])
    return body


def event_of(body: dict[str, Any], kind: str, now_ms: int | None = None) -> AgentEvent:
    """The event of a request body of `kind`, with `event_id` (a fresh id), `occurred_at`
    (now) and `kind` filled in when left out; InvalidRequest listing every problem."""
    return written_event(body, kind, now_ms)[0]


def written_event(
    body: dict[str, Any], kind: str, now_ms: int | None = None
) -> tuple[AgentEvent, bytes]:
    """As `event_of`, with the JSON the codec accepted it from: the value to write to
    `agent-events`, which the workers decode to the same event (no second encoding)."""
    filled = {
        "kind": kind,
        **body,
    }
    filled.setdefault("event_id", f"e-{uuid.uuid4().hex}")
    filled.setdefault("occurred_at", int(time.time() * 1000) if now_ms is None else now_ms)
    customer = filled.get("customer_id")
    key = customer.encode() if isinstance(customer, str) else None
    value = orjson.dumps(filled)
    try:
        event = decode_event(key, value, max_bytes=1 << 30)
    except InvalidEvent as exc:
        raise InvalidRequest(problems_of(body, kind) or [_problem_of(exc)]) from None
    # another kind, or fields the codec ignores (a typo), are refused too
    if event.kind != kind or _unknown_fields(body, kind):
        raise InvalidRequest(problems_of(body, kind))
    return event, value


@cache
def _known(kind: str) -> tuple[frozenset[str], frozenset[str]]:
    """The fields of a request of `kind`, and of its `proposal` or `signal` object."""
    properties = schema(f"{kind}_request")["properties"]
    return frozenset(properties), frozenset(properties[kind]["properties"])


def _unknown_fields(body: dict[str, Any], kind: str) -> bool:
    """Whether a body the codec accepted has fields the schema does not know: a set
    difference, where the whole schema's validation would cost a hundred microseconds."""
    top, inner = _known(kind)
    nested = body.get(kind)
    return not body.keys() <= top or (isinstance(nested, dict) and not nested.keys() <= inner)


def problems_of(body: dict[str, Any], kind: str) -> list[Problem]:
    """Every problem the request's JSON Schema finds, in the order of the body's fields."""
    found: dict[Problem, None] = {}  # in order, once each
    for error in sorted(_validator(kind).iter_errors(body), key=lambda e: list(e.path)):
        found.update(dict.fromkeys(_problems(error)))
    return list(found)


def _problem_of(exc: InvalidEvent) -> Problem:
    return Problem(exc.field or "", exc.detail)


def _problems(error: ValidationError) -> list[Problem]:
    path = ".".join(str(p) for p in error.absolute_path)
    prefix = f"{path}." if path else ""
    rules: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    properties: dict[str, Any] = rules.get("properties", {})
    instance: Any = error.instance
    value: Any = error.validator_value
    if error.validator == "required":
        missing = [p for p in value if p not in instance]
        return [
            Problem(prefix + name, "is required" + _described(properties.get(name, {})))
            for name in missing
        ]
    if error.validator == "additionalProperties":
        message = f"is not a field here; the fields are {', '.join(sorted(properties))}"
        return [Problem(prefix + name, message) for name in instance if name not in properties]
    shown = repr(instance)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if error.validator in ("enum", "const"):
        allowed = value if error.validator == "enum" else [value]
        listed = ", ".join("null" if a is None else str(a) for a in allowed)
        return [Problem(path, f"must be one of {listed}; got {shown}")]
    return [Problem(path, f"{_expected(str(error.validator), value, rules)}; got {shown}")]


def _described(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return ": one of " + ", ".join(str(a) for a in prop["enum"] if a is not None)
    if prop.get("type") == "integer" and "maximum" in prop and prop["maximum"] <= 100:
        return f": an integer {prop.get('minimum', 0)}..{prop['maximum']}"
    if prop.get("type") == "object":
        return ": an object"
    if prop.get("type") == "string":
        return ": a string" + (" (not empty)" if prop.get("minLength") else "")
    return ""


def _expected(validator: str, value: Any, rules: dict[str, Any]) -> str:
    if validator == "type":
        types = value if isinstance(value, list) else [value]
        return "must be " + " or ".join("null" if t == "null" else f"a {t}" for t in types)
    if validator in ("minimum", "maximum"):
        return f"must be between {rules.get('minimum')} and {rules.get('maximum')}"
    if validator == "minLength":
        return "must not be empty"
    if validator == "maxLength":
        return f"must be at most {value} characters"
    return f"is invalid ({validator} {value!r})"
