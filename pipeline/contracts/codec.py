"""Bytes <-> contract values for every topic: JSON, Avro single-object encoding, or Avro in
schema registry framing (byte 0, a 4-byte big-endian schema id, the Avro body).

Inputs are sniffed per record, so agents may produce any of them on the same topic. A
registry-framed value names its writer schema by id; the decoder is given a lookup for it
(`SchemaLookup`) and does no I/O itself: fetching, caching and retrying are the kafka
layer's (pipeline/kafka/schema_registry.py).
Decoding an input event is the hot path: schemas are parsed once, the happy path raises
nothing, and every rejection carries a reason code fit for the dead-letter topic.
"""

from __future__ import annotations

import copy
import io
import math
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from pipeline.contracts import schemas
from pipeline.contracts.avro_reader import Reader, compile_reader
from pipeline.contracts.events import (
    ACTIONS,
    CATEGORIES,
    CHANNELS,
    SIGNAL_TYPES,
    AgentEvent,
    Proposal,
    Signal,
    event_to_dict,
    trusted_constructor,
)

MAGIC = b"\xc3\x01"
#: first byte of a schema-registry-framed value (Confluent wire format), then the id
REGISTRY_MAGIC = 0
_REGISTRY_HEADER_LEN = 5
#: formats `encode_record` writes: TOWER_OUTPUT_FORMAT
FORMATS = ("avro", "json", "registry-avro")
#: what `_build_event` returns, built without the frozen `__init__` (validated already)
_new_event = trusted_constructor(AgentEvent)
_new_proposal = trusted_constructor(Proposal)
_new_signal = trusted_constructor(Signal)
_HEADER_LEN = 10  # 2 magic bytes + 8 fingerprint bytes
_MAX_LONG = 2**63 - 1

REASONS: frozenset[str] = frozenset(
    {
        "oversize",
        "bad_json",
        "bad_avro",
        "unknown_fingerprint",
        "missing_field",
        "invalid_field",
        "key_mismatch",
        "unknown_format",
        "unknown_schema_id",
        "incompatible_schema",
    }
)


@dataclass(frozen=True, slots=True)
class RegistrySchema:
    """A registry's writer schema, checked once against one of our schemas (the reader)."""

    schema_id: int
    #: fastavro-parsed writer schema; None when it cannot be read (see `problem`)
    writer: Any
    #: the reader schema to resolve to; None when the writer is the reader itself
    reader: Any
    #: why our schema cannot read what it writes; None when it can
    problem: str | None = None


#: (our schema's name, schema id) -> the writer schema, or None for an id the registry
#: does not know. Raises when the registry cannot be asked (the caller's retry concern).
SchemaLookup = Callable[[str, int], RegistrySchema | None]


def registry_schema(
    name: str, schema_id: int, schema: str, schema_type: str = "AVRO"
) -> RegistrySchema:
    """Check a registry's schema text against our schema `name`, once per id: a writer
    schema our schema reads by Avro schema resolution (older or newer, compatible) is
    accepted; any other is `problem`."""
    ours = schemas.get(name)
    if schema_type.upper() != "AVRO":
        return RegistrySchema(schema_id, None, None, f"it is a {schema_type} schema, not Avro")
    try:
        raw = orjson.loads(schema)
        parsed = parse_schema(raw)
    except Exception as exc:  # orjson and fastavro raise several kinds for a bad schema
        return RegistrySchema(schema_id, None, None, f"it does not parse: {exc}")
    if to_parsing_canonical_form(raw) == ours.canonical:
        return RegistrySchema(schema_id, ours.parsed, None)
    problems = schemas.backward_problems(ours.raw, raw)
    if problems:
        return RegistrySchema(schema_id, None, None, "; ".join(problems))
    return RegistrySchema(schema_id, parsed, ours.parsed)


def registry_header(schema_id: int) -> bytes:
    """The 5-byte registry framing header of values written with schema `schema_id`."""
    return bytes([REGISTRY_MAGIC]) + schema_id.to_bytes(4, "big")


class InvalidEvent(Exception):
    """An input record the tower cannot accept; `reason` is the dead-letter code."""

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


_AGENT = schemas.get("agent_event")
_AGENT_SCHEMA = _AGENT.parsed
_AGENT_FP = _AGENT.fingerprint
#: agent_event's compiled reader (avro_reader.py); fastavro decodes what it finds irregular
AGENT_READER: Reader | None = compile_reader(_AGENT.raw)
_CHANNELS_TXT = ", ".join(sorted(CHANNELS))
_ACTIONS_TXT = ", ".join(sorted(ACTIONS))
_CATEGORIES_TXT = ", ".join(sorted(CATEGORIES))
_SIGNAL_TYPES_TXT = ", ".join(sorted(SIGNAL_TYPES))


# --- input events --------------------------------------------------------------------


def decode_event(
    key: bytes | None,
    value: bytes | None,
    max_bytes: int = 65536,
    lookup: SchemaLookup | None = None,
) -> AgentEvent:
    """Decode and validate one `agent-events` record, or raise InvalidEvent.

    `lookup` finds registry-framed values' writer schemas; without it they are refused.
    """
    if value is None or not value:
        raise InvalidEvent(
            "unknown_format",
            "record value is empty (tombstone?); expected a JSON object or Avro "
            "single-object encoding (starting with bytes C3 01)",
        )
    if len(value) > max_bytes:
        raise InvalidEvent(
            "oversize", f"record value is {len(value)} bytes; the limit is {max_bytes} bytes"
        )
    if value[:2] == MAGIC:
        data = _read_avro(value)
    elif value[:1] == b"{" or value.lstrip()[:1] == b"{":
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("bad_json", f"value is not valid JSON: {exc}") from None
    elif value[0] == REGISTRY_MAGIC:
        data = _read_registry(value, lookup)
    else:
        raise InvalidEvent(
            "unknown_format",
            f"value starts with {bytes(value[:8])!r}; expected a JSON object ('{{'), Avro "
            "single-object encoding (starting with bytes C3 01) or schema registry framing "
            "(byte 00 and a schema id)",
        )
    event = _build_event(data)
    _check_key(key, event.customer_id)
    return event


def _read_avro(value: bytes) -> dict[str, Any]:
    if len(value) < _HEADER_LEN:
        raise InvalidEvent(
            "bad_avro",
            f"Avro single-object value is {len(value)} bytes, shorter than its 10-byte header",
        )
    fp = value[2:_HEADER_LEN]
    if fp != _AGENT_FP:
        other = schemas.name_for(fp)
        what = f"the {other} schema" if other else "no schema known to the tower"
        raise InvalidEvent(
            "unknown_fingerprint",
            f"Avro fingerprint {fp.hex()} belongs to {what}; agent-events must be written "
            f"with schemas/agent_event.avsc (fingerprint {_AGENT_FP.hex()})",
        )
    compiled = _read_compiled(value, _HEADER_LEN)
    if compiled is not None:
        return compiled
    buf = io.BytesIO(value)
    buf.seek(_HEADER_LEN)
    try:
        data = schemaless_reader(buf, _AGENT_SCHEMA, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
        raise InvalidEvent(
            "bad_avro",
            "Avro body does not decode with schemas/agent_event.avsc (truncated, or written "
            f"with another schema under its fingerprint): {type(exc).__name__}: {exc}",
        ) from None
    if buf.tell() != len(value):
        raise InvalidEvent(
            "bad_avro",
            f"{len(value) - buf.tell()} trailing bytes after the agent_event Avro body",
        )
    return data  # type: ignore[return-value]  # fastavro: a record schema reads as a dict


def _read_compiled(value: bytes, start: int) -> dict[str, Any] | None:
    """The agent_event body from `start` to the end of `value` by the compiled reader; None
    when it is irregular in any way (fastavro then decodes it, or says what is wrong)."""
    if AGENT_READER is None or type(value) is not bytes:
        return None
    try:
        data, end = AGENT_READER(value, start)
    except Exception:  # Irregular, IndexError (truncated), UnicodeDecodeError, struct.error
        return None
    return data if end == len(value) else None


def _read_registry(value: bytes, lookup: SchemaLookup | None) -> dict[str, Any]:
    if len(value) < _REGISTRY_HEADER_LEN:
        raise InvalidEvent(
            "bad_avro",
            f"registry-framed value is {len(value)} bytes, shorter than its 5-byte header",
        )
    schema_id = int.from_bytes(value[1:_REGISTRY_HEADER_LEN], "big")
    if lookup is None:
        raise InvalidEvent(
            "unknown_format",
            f"value is in schema registry framing (schema id {schema_id}) but the tower has no "
            "schema registry; set TOWER_SCHEMA_REGISTRY_URL",
        )
    found = lookup("agent_event", schema_id)
    if found is None:
        raise InvalidEvent(
            "unknown_schema_id",
            f"schema id {schema_id} is not in the schema registry; produce with a serializer "
            "that registers its schema there (subject agent-events-value)",
        )
    if found.problem is not None:
        raise InvalidEvent(
            "incompatible_schema",
            f"schema id {schema_id} cannot be read as schemas/agent_event.avsc: {found.problem}",
        )
    if found.reader is None and found.writer is _AGENT_SCHEMA:  # written with ours: no resolution
        compiled = _read_compiled(value, _REGISTRY_HEADER_LEN)
        if compiled is not None:
            return compiled
    buf = io.BytesIO(value)
    buf.seek(_REGISTRY_HEADER_LEN)
    try:
        data = schemaless_reader(buf, found.writer, found.reader)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
        raise InvalidEvent(
            "bad_avro",
            f"Avro body does not decode with schema id {schema_id} (truncated, or written with "
            f"another schema): {type(exc).__name__}: {exc}",
        ) from None
    if buf.tell() != len(value):
        raise InvalidEvent(
            "bad_avro",
            f"{len(value) - buf.tell()} trailing bytes after the Avro body (schema id {schema_id})",
        )
    return data  # type: ignore[return-value]  # fastavro: a record schema reads as a dict


def _check_key(key: bytes | None, customer_id: str) -> None:
    if key is None:
        raise InvalidEvent(
            "key_mismatch",
            f"record has no key; it must be the customer_id {customer_id!r} (UTF-8) so "
            "all events of a customer land on one partition",
        )
    if key == customer_id.encode():
        return
    raise InvalidEvent(
        "key_mismatch",
        f"record key {bytes(key)[:64]!r} differs from customer_id {customer_id!r}; the key "
        "must be the customer_id encoded as UTF-8",
    )


def _build_event(d: dict[str, Any]) -> AgentEvent:
    event_id = _text(d, "event_id", "")
    customer_id = _text(d, "customer_id", "")
    occurred_at = d.get("occurred_at")
    if type(occurred_at) is not int or not 0 <= occurred_at <= _MAX_LONG:
        raise _bad_millis(d, "occurred_at", "", required=True)
    kind = d.get("kind")
    agent = _text(d, "agent", "")
    department = d.get("department")
    if type(department) is not str:
        raise _bad_text(d, "department", "", nonempty=False)
    channel = d.get("channel")
    if channel is not None and (type(channel) is not str or channel not in CHANNELS):
        raise _invalid("channel", f"one of {_CHANNELS_TXT}, or null", channel)
    conversation_id = _opt_str(d, "conversation_id", "")
    trigger = _opt_str(d, "trigger", "")
    raw_p = d.get("proposal")
    raw_s = d.get("signal")
    proposal: Proposal | None = None
    signal: Signal | None = None
    if kind == "proposal":
        if raw_p is None:
            raise InvalidEvent(
                "missing_field",
                "kind is 'proposal' but the proposal record is missing",
                "proposal",
            )
        if raw_s is not None:
            raise _invalid("signal", "null when kind is 'proposal'", raw_s)
        if channel is None:
            raise InvalidEvent(
                "missing_field", f"proposals need a channel: one of {_CHANNELS_TXT}", "channel"
            )
        proposal = _build_proposal(raw_p)
    elif kind == "signal":
        if raw_s is None:
            raise InvalidEvent(
                "missing_field", "kind is 'signal' but the signal record is missing", "signal"
            )
        if raw_p is not None:
            raise _invalid("proposal", "null when kind is 'signal'", raw_p)
        signal = _build_signal(raw_s)
    elif kind is None:
        raise InvalidEvent("missing_field", "kind is required: 'proposal' or 'signal'", "kind")
    else:
        raise _invalid("kind", "'proposal' or 'signal'", kind)
    return _new_event(
        event_id=event_id,
        customer_id=customer_id,
        occurred_at=occurred_at,
        kind=kind,
        agent=agent,
        department=department,
        channel=channel,
        conversation_id=conversation_id,
        trigger=trigger,
        proposal=proposal,
        signal=signal,
    )


def _build_proposal(p: Any) -> Proposal:
    if type(p) is not dict:
        raise _invalid("proposal", "an object", p)
    action = p.get("action")
    if type(action) is not str or action not in ACTIONS:
        raise _bad_enum(p, "action", "proposal.", _ACTIONS_TXT)
    category = p.get("category")
    if type(category) is not str or category not in CATEGORIES:
        raise _bad_enum(p, "category", "proposal.", _CATEGORIES_TXT)
    priority = p.get("priority")
    if type(priority) is not int or not 0 <= priority <= 100:
        if priority is None:
            raise InvalidEvent(
                "missing_field",
                "proposal.priority is required: an integer 0..100",
                "proposal.priority",
            )
        raise _invalid("proposal.priority", "an integer 0..100", priority)
    offer_value = p.get("offer_value")
    if offer_value is not None:
        offer_value = _finite(offer_value, "proposal.offer_value", "a finite number or null")
    propensity = p.get("propensity")
    if propensity is not None:
        propensity = _finite(propensity, "proposal.propensity", "a number 0..1 or null")
        if not 0.0 <= propensity <= 1.0:
            raise _invalid("proposal.propensity", "a number 0..1 or null", propensity)
    ai_generated = p.get("ai_generated", False)
    if type(ai_generated) is not bool:
        raise _invalid("proposal.ai_generated", "true or false", ai_generated)
    expires_at = p.get("expires_at")
    if expires_at is not None and (type(expires_at) is not int or not 0 <= expires_at <= _MAX_LONG):
        raise _bad_millis(p, "expires_at", "proposal.", required=False)
    return _new_proposal(
        action=action,
        category=category,
        priority=priority,
        content=_opt_str(p, "content", "proposal."),
        offer_id=_opt_str(p, "offer_id", "proposal."),
        offer_value=offer_value,
        propensity=propensity,
        asserts=_str_map(p, "asserts", "proposal."),
        ai_generated=ai_generated,
        expires_at=expires_at,
    )


def _build_signal(s: Any) -> Signal:
    if type(s) is not dict:
        raise _invalid("signal", "an object", s)
    type_ = s.get("type")
    if type(type_) is not str or type_ not in SIGNAL_TYPES:
        raise _bad_enum(s, "type", "signal.", _SIGNAL_TYPES_TXT)
    return _new_signal(type=type_, attributes=_str_map(s, "attributes", "signal."))


# Field checks: the happy path is one dict lookup and one type test; the slow helpers
# below only run to build a precise error.


def _text(d: dict[str, Any], name: str, path: str) -> str:
    v = d.get(name)
    if type(v) is str and v:
        return v
    raise _bad_text(d, name, path, nonempty=True)


def _opt_str(d: dict[str, Any], name: str, path: str) -> str | None:
    v = d.get(name)
    if v is None or type(v) is str:
        return v
    raise _invalid(path + name, "a string or null", v)


def _str_map(d: dict[str, Any], name: str, path: str) -> dict[str, str]:
    v = d.get(name)
    if v is None:
        if name in d:
            raise _invalid(path + name, "an object of string values (omit it for none)", v)
        return {}
    if type(v) is dict:
        for k, x in v.items():
            if type(x) is not str:
                raise _invalid(f"{path}{name}.{k}", "a string", x)
        return v
    raise _invalid(path + name, "an object of string values", v)


def _finite(v: Any, field: str, expected: str) -> float:
    if type(v) is float:
        if math.isfinite(v):
            return v
    elif type(v) is int and abs(v) < 2**53:
        return float(v)
    raise _invalid(field, expected, v)


def _bad_text(d: dict[str, Any], name: str, path: str, *, nonempty: bool) -> InvalidEvent:
    v = d.get(name)
    if v is None:
        return InvalidEvent(
            "missing_field", f"{path}{name} is required: a non-empty string", path + name
        )
    return _invalid(path + name, "a non-empty string" if nonempty else "a string", v)


def _bad_millis(d: dict[str, Any], name: str, path: str, *, required: bool) -> InvalidEvent:
    v = d.get(name)
    if v is None and required:
        return InvalidEvent(
            "missing_field",
            f"{path}{name} is required: epoch milliseconds as a non-negative integer",
            path + name,
        )
    return _invalid(path + name, "epoch milliseconds as a non-negative integer", v)


def _bad_enum(d: dict[str, Any], name: str, path: str, allowed: str) -> InvalidEvent:
    v = d.get(name)
    if v is None:
        return InvalidEvent(
            "missing_field", f"{path}{name} is required: one of {allowed}", path + name
        )
    return _invalid(path + name, f"one of {allowed}", v)


def _invalid(field: str, expected: str, got: Any) -> InvalidEvent:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidEvent(
        "invalid_field", f"{field} must be {expected}; got {type(got).__name__} {shown}", field
    )


def encode_event(event: AgentEvent, fmt: str = "avro") -> bytes:
    """Bytes an agent would produce for `event`; used by tests, load tools and replay."""
    return encode_record("agent_event", event_to_dict(event), fmt)


def canonical_event_json(event: AgentEvent) -> str:
    """Stable JSON of an event (sorted keys) for the audit trail, decodable for replay."""
    return orjson.dumps(event_to_dict(event), option=orjson.OPT_SORT_KEYS).decode()


# --- any topic value -----------------------------------------------------------------

_local = threading.local()


def _buffer() -> io.BytesIO:
    buf: io.BytesIO | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = io.BytesIO()
    buf.seek(0)
    buf.truncate()
    return buf


def _bytes_fields(name: str) -> tuple[str, ...]:
    """Top-level bytes fields, which JSON carries as Avro-JSON style latin-1 strings."""
    out = []
    for f in schemas.get(name).parsed["fields"]:
        t = f["type"]
        if t == "bytes" or (isinstance(t, list) and "bytes" in t):
            out.append(f["name"])
    return tuple(out)


_BYTES_FIELDS: dict[str, tuple[str, ...]] = {n: _bytes_fields(n) for n in schemas.NAMES}


def avro_header(name: str, fmt: str, schema_id: int | None = None) -> bytes | None:
    """What `encode_record` puts before the Avro body of a `name` value in format `fmt`
    (None for JSON), for writers that encode the body themselves."""
    if fmt == "avro":
        return MAGIC + schemas.get(name).fingerprint
    if fmt == "registry-avro" and schema_id is not None:
        return registry_header(schema_id)
    return None


def encode_record(
    name: str, record: Mapping[str, Any], fmt: str = "avro", schema_id: int | None = None
) -> bytes:
    """Encode a topic value; Avro is single-object encoded, so readers can sniff it, or in
    schema registry framing ("registry-avro", with the id the schema is registered under).

    JSON is plain (unions unwrapped); bytes fields become latin-1 strings as in the
    Avro JSON encoding, which keeps a dead-lettered JSON payload readable.
    """
    info = schemas.get(name)
    if fmt == "avro" or fmt == "registry-avro":
        if fmt == "avro":
            header = MAGIC + info.fingerprint
        elif schema_id is None:
            raise ValueError(f"registry-avro needs the schema id {name} is registered under")
        else:
            header = registry_header(schema_id)
        if info.writer is not None:
            try:
                return header + info.writer(record)
            except (TypeError, ValueError, KeyError, AttributeError, struct.error):
                pass  # fastavro below names the offending field in its error
        buf = _buffer()
        buf.write(header)
        try:
            schemaless_writer(buf, info.parsed, record, strict_allow_default=True)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"record does not match schema {name}: {exc}") from None
        return buf.getvalue()
    if fmt == "json":
        try:
            validate(record, info.parsed, raise_errors=True)
        except ValidationError as exc:
            raise ValueError(f"record does not match schema {name}: {exc}") from None
        out = dict(record)
        for f in _BYTES_FIELDS[name]:
            v = out.get(f)
            if v is not None:
                out[f] = bytes(v).decode("latin-1")
        return orjson.dumps(out)
    raise ValueError(f"unknown format {fmt!r}; use 'avro', 'json' or 'registry-avro'")


def decode_record(name: str, value: bytes, lookup: SchemaLookup | None = None) -> dict[str, Any]:
    """Decode a topic value in any of the formats into the schema's dict shape; `lookup`
    finds the writer schemas of registry-framed values."""
    info = schemas.get(name)
    if value[:1] == b"\x00" and len(value) >= _REGISTRY_HEADER_LEN:
        schema_id = int.from_bytes(value[1:_REGISTRY_HEADER_LEN], "big")
        if lookup is None:
            raise ValueError(
                f"{name} value is in schema registry framing (schema id {schema_id}); set "
                "TOWER_SCHEMA_REGISTRY_URL to read it"
            )
        found = lookup(name, schema_id)
        if found is None or found.problem is not None:
            why = "not in the schema registry" if found is None else found.problem
            raise ValueError(f"schema id {schema_id} cannot be read as {name}: {why}")
        buf = io.BytesIO(value)
        buf.seek(_REGISTRY_HEADER_LEN)
        try:
            return schemaless_reader(buf, found.writer, found.reader)  # type: ignore[return-value]
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise ValueError(f"Avro body does not decode as {name}: {exc}") from None
    if value[:2] == MAGIC:
        fp = value[2:_HEADER_LEN]
        writer = info.parsed if fp == info.fingerprint else schemas.revisions(name).get(fp)
        if writer is None:
            other = schemas.name_for(fp)
            raise ValueError(
                f"Avro fingerprint {fp.hex()} is {other or 'unknown'}, expected {name} "
                f"({info.fingerprint.hex()})"
            )
        reader = None if writer is info.parsed else info.parsed  # an older revision: resolve
        buf = io.BytesIO(value)
        buf.seek(_HEADER_LEN)
        try:
            # fastavro types the result as any Avro value; a record schema reads as a dict
            return schemaless_reader(buf, writer, reader)  # type: ignore[return-value]
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise ValueError(f"Avro body does not decode as {name}: {exc}") from None
    data = orjson.loads(value)
    if type(data) is not dict:
        raise ValueError(f"{name} JSON value must be an object")
    for f in info.parsed["fields"]:
        if f["name"] not in data and "default" in f:
            data[f["name"]] = copy.deepcopy(f["default"])
    for f in _BYTES_FIELDS[name]:
        v = data.get(f)
        if type(v) is str:
            data[f] = v.encode("latin-1")
    try:
        validate(data, info.parsed, raise_errors=True)
    except ValidationError as exc:
        raise ValueError(f"value does not match schema {name}: {exc}") from None
    return data
