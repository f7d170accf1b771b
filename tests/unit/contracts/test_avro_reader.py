"""The compiled agent_event reader against fastavro's: the same decoded value on every
value the schema admits, and on malformed input the same outcome of `decode_event` (value,
or dead-letter reason and detail) as with fastavro alone."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import codec, schemas
from pipeline.contracts.avro_reader import Irregular, compile_reader
from pipeline.contracts.codec import MAGIC, InvalidEvent, decode_event, encode_event
from pipeline.contracts.events import AgentEvent, event_to_dict
from tests.unit.contracts.test_avro_writer import values
from tests.unit.contracts.test_codec import (
    MINIMAL_PROPOSAL,
    PROPOSAL,
    REGISTRY_REJECTIONS,
    REJECTIONS,
    SIGNAL,
    events,
    framed,
    key_of,
    lookup,
)

AGENT = schemas.get("agent_event")
READ = compile_reader(AGENT.raw)
HEADER = MAGIC + AGENT.fingerprint


def fastavro_read(body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), AGENT.parsed, None)


def fastavro_bytes(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, AGENT.parsed, record)
    return buf.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same types (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def outcome(key: bytes | None, value: bytes | None, **kwargs: Any) -> Any:
    """What `decode_event` makes of the record: the event, or the reason and detail."""
    try:
        return decode_event(key, value, **kwargs)
    except InvalidEvent as exc:
        return (exc.reason, exc.detail, exc.field)


def fastavro_outcome(
    monkeypatch: pytest.MonkeyPatch, key: bytes | None, value: bytes | None, **kwargs: Any
) -> Any:
    with monkeypatch.context() as m:
        m.setattr(codec, "AGENT_READER", None)
        return outcome(key, value, **kwargs)


@pytest.mark.parametrize("event", [PROPOSAL, MINIMAL_PROPOSAL, SIGNAL], ids=lambda e: e.event_id)
def test_the_example_events_read_as_fastavro_reads_them(event: AgentEvent) -> None:
    body = encode_event(event, "avro")[len(HEADER) :]
    assert same(READ(body, 0), (fastavro_read(body), len(body)))


@settings(max_examples=300, deadline=None)
@given(values(AGENT.raw))
def test_every_value_the_schema_admits_reads_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    body = fastavro_bytes(record)
    decoded, end = READ(body, 0)
    assert end == len(body)
    assert same(decoded, fastavro_read(body))


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, -0.0, 5e-324])
def test_special_doubles_read_as_fastavro_reads_them(x: float) -> None:
    record = event_to_dict(PROPOSAL)
    body = fastavro_bytes({**record, "proposal": {**record["proposal"], "offer_value": x}})
    assert same(READ(body, 0)[0], fastavro_read(body))


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing at all
        b"\x80",  # a varint cut short
        b"\xff" * 11,  # a varint longer than 10 bytes
        b"\xff" * 9 + b"\x7f",  # 10 bytes, beyond 64 bits
        b"\x04\xff\xfe",  # invalid UTF-8
        b"\x03",  # a negative length
    ],
)
def test_irregular_bodies_raise(body: bytes) -> None:
    with pytest.raises((Irregular, IndexError, UnicodeDecodeError)):
        READ(body, 0)


@pytest.mark.parametrize(
    ("key", "value"), [r[1:3] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_the_dead_letter_cases_are_refused_as_with_fastavro(
    monkeypatch: pytest.MonkeyPatch, key: bytes | None, value: bytes | None
) -> None:
    assert outcome(key, value) == fastavro_outcome(monkeypatch, key, value)


@pytest.mark.parametrize(
    "value", [r[1] for r in REGISTRY_REJECTIONS], ids=[r[0] for r in REGISTRY_REJECTIONS]
)
def test_the_registry_dead_letter_cases_are_refused_as_with_fastavro(
    monkeypatch: pytest.MonkeyPatch, value: bytes
) -> None:
    got = outcome(b"cust-42", value, lookup=lookup)
    assert got == fastavro_outcome(monkeypatch, b"cust-42", value, lookup=lookup)


@pytest.mark.parametrize("schema_id", [1, 2, 3], ids=["same", "older", "newer"])
def test_registry_framed_input_reads_as_with_fastavro(
    monkeypatch: pytest.MonkeyPatch, schema_id: int
) -> None:
    value = framed(schema_id, event_to_dict(PROPOSAL))
    got = outcome(b"cust-42", value, lookup=lookup)
    assert isinstance(got, AgentEvent)
    assert got == fastavro_outcome(monkeypatch, b"cust-42", value, lookup=lookup)


def _damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """`good` cut short, with bytes changed, inserted or appended: what a broken producer,
    a bit flip or a wrong schema make of an event."""
    body = bytearray(good[len(HEADER) :])
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["flip", "set", "insert", "cut", "append"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if how == "flip" and body:
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and body:
            body[at] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x06, 0x7F, 0x80, 0xFF]))
        elif how == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif how == "cut":
            del body[at:]
        elif how == "append":
            body += draw(st.binary(min_size=1, max_size=3))
    return HEADER + bytes(body)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_damaged_events_decode_or_fail_exactly_as_with_fastavro(data: st.DataObject) -> None:
    event = data.draw(events())
    value = _damaged(data.draw, encode_event(event, "avro"))
    got = outcome(key_of(event), value, max_bytes=1 << 20)
    codec_reader = codec.AGENT_READER
    codec.AGENT_READER = None
    try:
        expected = outcome(key_of(event), value, max_bytes=1 << 20)
    finally:
        codec.AGENT_READER = codec_reader
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_body_decodes_or_fails_exactly_as_with_fastavro(body: bytes) -> None:
    codec_reader = codec.AGENT_READER
    got = outcome(b"c", HEADER + body)
    codec.AGENT_READER = None
    try:
        expected = outcome(b"c", HEADER + body)
    finally:
        codec.AGENT_READER = codec_reader
    assert got == expected


def test_the_codec_uses_the_compiled_reader() -> None:
    assert codec.AGENT_READER is not None


def test_unsupported_types_are_refused_at_compile_time() -> None:
    for field_type in (
        {"type": "enum", "name": "E", "symbols": ["a"]},
        {"type": "fixed", "name": "F", "size": 2},
        {"type": "long", "logicalType": "timestamp-millis"},
        "journeytower.Other",
    ):
        schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
        with pytest.raises(NotImplementedError):
            compile_reader(schema)
