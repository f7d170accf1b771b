"""The compiled Avro writer against fastavro's, byte for byte, on generated records."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import schemas
from pipeline.contracts.avro_writer import compile_writer
from pipeline.contracts.codec import encode_record

OUTPUT_SCHEMAS = ("approved_action", "audit_record", "dead_letter")
LONG = st.integers(-(2**63), 2**63 - 1)
PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=80),
    "bytes": st.binary(max_size=200),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": LONG,
    "double": st.floats(allow_nan=False),
    "boolean": st.booleans(),
}


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Every value the schema admits, as a dict-shaped strategy."""
    if isinstance(schema, str):
        return PRIMITIVES[schema]
    if isinstance(schema, list):
        return st.one_of(*(st.none() if b == "null" else values(b) for b in schema))
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=70)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), values(schema["values"]), max_size=70)
    return PRIMITIVES[kind]


def fastavro_bytes(name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schemas.get(name).parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", OUTPUT_SCHEMAS)
def test_every_output_schema_compiles(name):
    assert schemas.get(name).writer is not None


@pytest.mark.parametrize("name", OUTPUT_SCHEMAS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_same_bytes_as_fastavro(name, data):
    info = schemas.get(name)
    record = data.draw(values(info.parsed))
    assert info.writer is not None
    assert info.writer(record) == fastavro_bytes(name, record)


@given(n=LONG)
def test_longs_round_trip_through_fastavro(n):
    write = compile_writer(
        {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]}
    )
    assert schemaless_reader(io.BytesIO(write({"n": n})), {"type": "long"}, None) == n


#: An audit record without the fields that have defaults (channel, trigger, rule, trace,
#: action_id, merged_into).
MINIMAL_AUDIT = {
    "decision_id": "d",
    "event_id": "e",
    "customer_id": "c",
    "kind": "signal",
    "agent": "a",
    "department": "x",
    "outcome": "recorded",
    "reason": "r",
    "policy_version": "v",
    "decided_at": 1,
    "source_topic": "t",
    "source_partition": 0,
    "source_offset": 5,
    "input": "{}",
    "processed_at": 2,
}


def test_missing_fields_with_defaults_take_them():
    info = schemas.get("audit_record")
    assert info.writer is not None
    defaults = dict.fromkeys(("channel", "trigger", "rule", "action_id", "merged_into"))
    full = {**MINIMAL_AUDIT, **defaults, "trace": []}
    assert info.writer(MINIMAL_AUDIT) == fastavro_bytes("audit_record", full)


@pytest.mark.parametrize(
    "bad",
    [{"source_offset": "12"}, {"customer_id": None}, {"trace": [{"rule": "r"}]}],
)
def test_a_record_that_does_not_match_is_refused_with_fastavros_reason(bad):
    with pytest.raises(ValueError, match="does not match schema audit_record"):
        encode_record("audit_record", {**MINIMAL_AUDIT, **bad})


def test_unsupported_types_are_refused_at_compile_time():
    enum = {"type": "enum", "name": "E", "symbols": ["A"]}
    with pytest.raises(NotImplementedError):
        compile_writer({"type": "record", "name": "R", "fields": [{"name": "e", "type": enum}]})
