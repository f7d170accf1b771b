"""The wire contract: both formats decode to the same values, and every rejection is coded."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import schemas
from pipeline.contracts.codec import (
    MAGIC,
    REASONS,
    InvalidEvent,
    RegistrySchema,
    canonical_event_json,
    decode_event,
    decode_record,
    encode_event,
    encode_record,
    registry_header,
    registry_schema,
)
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

FORMATS = ("json", "avro")

PROPOSAL = AgentEvent(
    event_id="evt-1",
    customer_id="cust-42",
    occurred_at=1_700_000_000_000,
    kind="proposal",
    agent="upsell-bot",
    department="sales",
    channel="email",
    conversation_id="conv-9",
    trigger="cart_abandoned",
    proposal=Proposal(
        action="offer",
        category="marketing",
        priority=70,
        content="10% off, today only",
        offer_id="off-10",
        offer_value=19.99,
        propensity=0.42,
        asserts={"consent.marketing": "granted"},
        ai_generated=True,
        expires_at=1_700_000_360_000,
    ),
)
MINIMAL_PROPOSAL = AgentEvent(
    event_id="evt-2",
    customer_id="cust-42",
    occurred_at=0,
    kind="proposal",
    agent="service-bot",
    department="service",
    channel="chat",
    proposal=Proposal(action="answer", category="service", priority=0),
)
SIGNAL = AgentEvent(
    event_id="evt-3",
    customer_id="cüst-ü",
    occurred_at=1_700_000_000_001,
    kind="signal",
    agent="crm",
    department="service",
    signal=Signal(type="case_opened", attributes={"case_id": "C-1", "severity": "high"}),
)


def key_of(event: AgentEvent) -> bytes:
    return event.customer_id.encode()


def json_value(**changes: Any) -> bytes:
    """PROPOSAL as JSON with top-level or `proposal.x` fields changed (None deletes)."""
    d = event_to_dict(PROPOSAL)
    for path, v in changes.items():
        target, name = (d["proposal"], path[2:]) if path.startswith("p_") else (d, path)
        if v is None:
            target.pop(name, None)
        else:
            target[name] = v
    return orjson.dumps(d)


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("event", [PROPOSAL, MINIMAL_PROPOSAL, SIGNAL], ids=lambda e: e.event_id)
def test_event_round_trip(event: AgentEvent, fmt: str) -> None:
    value = encode_event(event, fmt)
    assert value.startswith(MAGIC) == (fmt == "avro")
    assert decode_event(key_of(event), value) == event


def test_json_may_omit_nullable_and_map_fields_and_add_unknown_ones() -> None:
    value = orjson.dumps(
        {
            "event_id": "e",
            "customer_id": "c",
            "occurred_at": 5,
            "kind": "signal",
            "agent": "a",
            "department": "d",
            "signal": {"type": "purchase"},
            "something_new": [1, 2],
        }
    )
    event = decode_event(b"c", b"  \n" + value)
    assert event == AgentEvent("e", "c", 5, "signal", "a", "d", signal=Signal("purchase"))


def test_json_integer_offer_value_becomes_float() -> None:
    event = decode_event(b"cust-42", json_value(p_offer_value=20))
    assert event.proposal is not None
    assert type(event.proposal.offer_value) is float
    assert event.proposal.offer_value == 20.0


def test_canonical_json_replays_to_the_same_event() -> None:
    text = canonical_event_json(PROPOSAL)
    assert text == canonical_event_json(decode_event(b"cust-42", text.encode()))
    assert decode_event(b"cust-42", text.encode()) == PROPOSAL


# --- rejections --------------------------------------------------------------------

_AVRO = encode_event(PROPOSAL, "avro")
_OTHER_FP = schemas.get("audit_record").fingerprint

REJECTIONS: list[tuple[str, bytes | None, bytes | None, str]] = [
    ("oversize", b"cust-42", b"{" + b" " * 70_000 + b"}", "oversize"),
    ("truncated avro", b"cust-42", _AVRO[:-5], "bad_avro"),
    ("avro header only", b"cust-42", _AVRO[:6], "bad_avro"),
    ("avro trailing bytes", b"cust-42", _AVRO + b"\x00", "bad_avro"),
    ("other schema's fingerprint", b"cust-42", MAGIC + _OTHER_FP + _AVRO[10:],
        "unknown_fingerprint"),
    ("unknown fingerprint", b"cust-42", MAGIC + b"\x00" * 8 + _AVRO[10:], "unknown_fingerprint"),
    ("bad json", b"cust-42", b'{"event_id": "e",', "bad_json"),
    ("missing event_id", b"cust-42", json_value(event_id=None), "missing_field"),
    ("missing kind", b"cust-42", json_value(kind=None), "missing_field"),
    ("missing proposal", b"cust-42", json_value(proposal=None), "missing_field"),
    ("proposal without channel", b"cust-42", json_value(channel=None), "missing_field"),
    ("missing priority", b"cust-42", json_value(p_priority=None), "missing_field"),
    ("empty event_id", b"cust-42", json_value(event_id=""), "invalid_field"),
    ("priority 101", b"cust-42", json_value(p_priority=101), "invalid_field"),
    ("bool priority", b"cust-42", json_value(p_priority=True), "invalid_field"),
    ("float priority", b"cust-42", json_value(p_priority=5.0), "invalid_field"),
    ("bad channel", b"cust-42", json_value(channel="fax"), "invalid_field"),
    ("list channel", b"cust-42", json_value(channel=["email"]), "invalid_field"),
    ("bad action", b"cust-42", json_value(p_action="spam"), "invalid_field"),
    ("bad category", b"cust-42", json_value(p_category="gossip"), "invalid_field"),
    ("bad kind", b"cust-42", json_value(kind="command"), "invalid_field"),
    ("propensity above 1", b"cust-42", json_value(p_propensity=1.5), "invalid_field"),
    ("offer value beyond float precision", b"cust-42", json_value(p_offer_value=2**60),
        "invalid_field"),
    ("infinite offer value", b"cust-42", json_value(p_offer_value=0.5).replace(b"0.5", b"1e400"),
        "bad_json"),
    ("non-string assert", b"cust-42", json_value(p_asserts={"a": 1}), "invalid_field"),
    ("null asserts", b"cust-42", orjson.dumps({**event_to_dict(PROPOSAL), "proposal": {
        **event_to_dict(PROPOSAL)["proposal"], "asserts": None}}), "invalid_field"),
    ("negative occurred_at", b"cust-42", json_value(occurred_at=-1), "invalid_field"),
    ("string occurred_at", b"cust-42", json_value(occurred_at="2024-01-01"), "invalid_field"),
    ("bool ai_generated", b"cust-42", json_value(p_ai_generated="yes"), "invalid_field"),
    ("both sub-records", b"cust-42", json_value(signal={"type": "csat"}), "invalid_field"),
    ("bad signal type", b"c", orjson.dumps({**event_to_dict(SIGNAL), "customer_id": "c",
        "signal": {"type": "weather"}}), "invalid_field"),
    ("valid avro, bad value", b"cust-42", encode_record("agent_event",
        {**event_to_dict(PROPOSAL), "channel": "fax"}), "invalid_field"),
    ("key mismatch", b"cust-43", json_value(), "key_mismatch"),
    ("missing key", None, json_value(), "key_mismatch"),
    ("avro key mismatch", b"cust-43", _AVRO, "key_mismatch"),
    ("plain text", b"cust-42", b"hello tower", "unknown_format"),
    ("json array", b"cust-42", b"[1, 2]", "unknown_format"),
    ("tombstone", b"cust-42", None, "unknown_format"),
    ("empty value", b"cust-42", b"", "unknown_format"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "reason"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejection_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(key, value)
    assert info.value.reason == reason
    assert info.value.detail  # humans must be told what was wrong


# --- schema registry framing (byte 0, 4-byte big-endian id, Avro body) ----------------

_RAW_AGENT = orjson.loads((schemas.schema_dir() / "agent_event.avsc").read_bytes())


def _variant(drop: str = "", add: dict[str, Any] | None = None, retype: str = "") -> str:
    fields = [dict(f) for f in _RAW_AGENT["fields"] if f["name"] != drop]
    for f in fields:
        if f["name"] == retype:
            f["type"] = "string"
    if add:
        fields.append(add)
    return orjson.dumps({**_RAW_AGENT, "fields": fields}).decode()


#: what a registry would hold: id -> schema text
REGISTRY = {
    1: orjson.dumps(_RAW_AGENT).decode(),
    2: _variant(drop="trigger"),  # an older producer: a field with a default is missing
    3: _variant(add={"name": "locale", "type": "string", "default": "en"}),  # a newer one
    4: _variant(retype="occurred_at"),  # a long is now a string: no reader can resolve it
}


def lookup(name: str, schema_id: int) -> RegistrySchema | None:
    text = REGISTRY.get(schema_id)
    return None if text is None else registry_schema(name, schema_id, text)


def framed(schema_id: int, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    writer = parse_schema(orjson.loads(REGISTRY[schema_id]))
    schemaless_writer(buf, writer, record)
    return registry_header(schema_id) + buf.getvalue()


@pytest.mark.parametrize("event", [PROPOSAL, SIGNAL], ids=["proposal", "signal"])
@pytest.mark.parametrize("schema_id", [1, 2, 3], ids=["same", "older", "newer"])
def test_registry_framed_input_decodes_by_schema_resolution(
    event: AgentEvent, schema_id: int
) -> None:
    record = {**event_to_dict(event), "locale": "de"}
    value = framed(schema_id, record)
    decoded = decode_event(event.customer_id.encode(), value, lookup=lookup)
    expected = dataclasses.replace(event, trigger=None) if schema_id == 2 else event
    assert decoded == expected


def test_confluent_serializer_framing_is_read() -> None:
    """confluent-kafka's AvroSerializer writes Java's KafkaAvroSerializer framing."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from tests.registry_standin import StandInRegistry

    server = StandInRegistry().start()
    try:
        client = SchemaRegistryClient({"url": server.url})
        serializer = AvroSerializer(client, REGISTRY[3])
        ctx = SerializationContext("agent-events", MessageField.VALUE)
        value = serializer({**event_to_dict(PROPOSAL), "locale": "fr"}, ctx)
        assert value is not None
        assert value[:1] == b"\x00"
        schema_id = int.from_bytes(value[1:5], "big")
        text, _ = server.state.by_id[schema_id]

        def served(name: str, i: int) -> RegistrySchema | None:
            return registry_schema(name, i, text) if i == schema_id else None

        assert decode_event(b"cust-42", value, lookup=served) == PROPOSAL
    finally:
        server.stop()


REGISTRY_REJECTIONS = [
    ("unknown schema id", framed(1, event_to_dict(PROPOSAL))[:1] + (99).to_bytes(4, "big")
        + framed(1, event_to_dict(PROPOSAL))[5:], "unknown_schema_id"),
    ("incompatible schema", framed(4, {**event_to_dict(PROPOSAL), "occurred_at": "x"}),
        "incompatible_schema"),
    ("shorter than the header", b"\x00\x00\x01", "bad_avro"),
    ("truncated body", framed(1, event_to_dict(PROPOSAL))[:-3], "bad_avro"),
    ("trailing bytes", framed(1, event_to_dict(PROPOSAL)) + b"\x00", "bad_avro"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "reason"),
    [r[1:] for r in REGISTRY_REJECTIONS],
    ids=[r[0] for r in REGISTRY_REJECTIONS],
)
def test_registry_rejection_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b"cust-42", value, lookup=lookup)
    assert info.value.reason == reason
    assert info.value.detail


def test_incompatible_schema_says_why() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b"cust-42", REGISTRY_REJECTIONS[1][1], lookup=lookup)
    assert "schema id 4" in info.value.detail
    assert "occurred_at" in info.value.detail or "/fields/2" in info.value.detail


def test_non_avro_registry_schema_is_incompatible() -> None:
    found = registry_schema("agent_event", 7, 'syntax = "proto3";', "PROTOBUF")
    assert found.problem is not None and "PROTOBUF" in found.problem


def test_registry_framing_without_a_registry_says_which_setting() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b"cust-42", framed(1, event_to_dict(PROPOSAL)))
    assert info.value.reason == "unknown_format"
    assert "TOWER_SCHEMA_REGISTRY_URL" in info.value.detail


@pytest.mark.parametrize("name", ["approved_action", "audit_record", "dead_letter"])
def test_registry_avro_output_round_trips(name: str) -> None:
    record = decode_record(name, encode_record(name, dict(OUTPUTS)[name]))
    value = encode_record(name, record, "registry-avro", schema_id=1234)
    assert value[:5] == registry_header(1234) == b"\x00\x00\x00\x04\xd2"
    assert value[5:] == encode_record(name, record)[10:]  # only the header differs

    def ours(n: str, i: int) -> RegistrySchema | None:
        return registry_schema(n, i, orjson.dumps(schemas.get(n).raw).decode())

    assert decode_record(name, value, ours) == record
    with pytest.raises(ValueError, match="TOWER_SCHEMA_REGISTRY_URL"):
        decode_record(name, value)


def test_registry_avro_output_needs_an_id() -> None:
    with pytest.raises(ValueError, match="schema id"):
        encode_record("audit_record", AUDIT, "registry-avro")


def test_every_reason_code_is_exercised() -> None:
    assert {r[3] for r in REJECTIONS} | {r[2] for r in REGISTRY_REJECTIONS} == REASONS


def test_details_say_what_would_be_valid() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b"cust-42", json_value(channel="fax"))
    assert "'fax'" in info.value.detail
    assert "email" in info.value.detail
    assert info.value.field == "channel"


def test_oversize_is_checked_before_parsing() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b"cust-42", b"not even json", max_bytes=4)
    assert info.value.reason == "oversize"


# --- output records ----------------------------------------------------------------

APPROVED = {
    "action_id": "act-1",
    "decision_id": "dec-1",
    "customer_id": "cust-42",
    "channel": "email",
    "action": "offer",
    "category": "marketing",
    "content": "10% off",
    "offer_id": "off-10",
    "offer_value": 19.99,
    "conversation_id": None,
    "asserts": {"consent.marketing": "granted"},
    "source_event_ids": ["evt-1", "evt-7"],
    "agents": ["upsell-bot", "retention-bot"],
    "decided_at": 1_700_000_000_500,
    "not_before": None,
    "policy_version": "2024.06.1",
}
AUDIT = {
    "decision_id": "dec-1",
    "event_id": "evt-1",
    "customer_id": "cust-42",
    "kind": "proposal",
    "agent": "upsell-bot",
    "department": "sales",
    "channel": "email",
    "trigger": None,
    "outcome": "approved",
    "rule": None,
    "reason": "all rules passed",
    "trace": [{"rule": "consent", "verdict": "pass", "reason": "marketing consent granted"}],
    "policy_version": "2024.06.1",
    "action_id": "act-1",
    "merged_into": None,
    "decided_at": 1_700_000_000_500,
    "source_topic": "agent-events",
    "source_partition": 3,
    "source_offset": 2**40,
    "input": canonical_event_json(PROPOSAL),
    "processed_at": 1_700_000_000_501,
    "experiments": [{"experiment": "holdout:upsell-bot", "arm": "treatment"}],
}
DEAD_LETTER = {
    "reason": "bad_json",
    "detail": "value is not valid JSON",
    "raw_key": b"cust-42",
    "raw_value": b'{"event_id": "\xc3\xa9\xff',
    "source_topic": "agent-events",
    "source_partition": 0,
    "source_offset": 17,
    "source_timestamp": None,
    "dead_lettered_at": 1_700_000_000_502,
}
OUTPUTS = [("approved_action", APPROVED), ("audit_record", AUDIT), ("dead_letter", DEAD_LETTER)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("name", "record"), OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_output_round_trip(name: str, record: dict[str, Any], fmt: str) -> None:
    assert decode_record(name, encode_record(name, record, fmt)) == record


def test_audit_records_of_an_earlier_schema_revision_still_decode() -> None:
    """Records written before `experiments` was added (revision 1) read with its default."""
    (fingerprint, revision_1), *_ = schemas.revisions("audit_record").items()
    assert fingerprint != schemas.get("audit_record").fingerprint
    old = {k: v for k, v in AUDIT.items() if k != "experiments"}
    buf = io.BytesIO()
    schemaless_writer(buf, revision_1, old)
    value = MAGIC + fingerprint + buf.getvalue()
    assert schemas.name_for(fingerprint) == "audit_record"
    assert decode_record("audit_record", value) == {**old, "experiments": []}


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_defaults_are_filled(fmt: str) -> None:
    sparse = {k: v for k, v in DEAD_LETTER.items() if k not in ("raw_key", "source_timestamp")}
    assert decode_record("dead_letter", encode_record("dead_letter", sparse, fmt)) == {
        **sparse,
        "raw_key": None,
        "source_timestamp": None,
    }


def test_dead_letter_json_keeps_text_payload_readable() -> None:
    record = {**DEAD_LETTER, "raw_value": b'{"event_id": 1'}
    assert b'"raw_value":"{\\"event_id\\": 1"' in encode_record("dead_letter", record, "json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_encoding_rejects_bad_records(fmt: str) -> None:
    with pytest.raises(ValueError):
        encode_record("approved_action", {**APPROVED, "decided_at": "soon"}, fmt)


def test_decode_record_rejects_other_schema() -> None:
    with pytest.raises(ValueError, match="audit_record"):
        decode_record("approved_action", encode_record("audit_record", AUDIT))


def test_unknown_format_name_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_record("approved_action", APPROVED, "xml")


# --- schema identity ---------------------------------------------------------------


@pytest.mark.parametrize("name", schemas.NAMES)
def test_fingerprint_matches_fastavro(name: str) -> None:
    info = schemas.get(name)
    assert info.fingerprint == bytes.fromhex(fastavro_fingerprint(info.canonical, "CRC-64-AVRO"))
    assert schemas.name_for(info.fingerprint) == name


def test_crc64_avro_spec_vector() -> None:
    # From the Avro spec test data: fingerprint64("int") as a signed Java long.
    assert schemas.crc64_avro(b'"int"') == 8247732601305521295


def test_fingerprints_are_distinct() -> None:
    assert len({schemas.get(n).fingerprint for n in schemas.NAMES}) == len(schemas.NAMES)


@pytest.mark.parametrize("name", schemas.NAMES)
def test_every_field_is_documented(name: str) -> None:
    def fields(schema: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        if isinstance(schema, list):
            for s in schema:
                found += fields(s)
        elif isinstance(schema, dict):
            if schema.get("type") == "record":
                for f in schema["fields"]:
                    found += [f, *fields(f["type"])]
            elif schema.get("type") == "array":
                found += fields(schema["items"])
        return found

    raw = orjson.loads((schemas.schema_dir() / f"{name}.avsc").read_bytes())
    assert raw["namespace"] == "journeytower"
    assert all(f.get("doc") for f in fields(raw))


# --- property: any valid event survives both formats --------------------------------

_text = st.text(min_size=1, max_size=20)
_opt_text = st.none() | st.text(max_size=30)
_millis = st.integers(min_value=0, max_value=2**63 - 1)
_str_map = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4)

_proposals = st.builds(
    Proposal,
    action=st.sampled_from(sorted(ACTIONS)),
    category=st.sampled_from(sorted(CATEGORIES)),
    priority=st.integers(0, 100),
    content=_opt_text,
    offer_id=_opt_text,
    offer_value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    propensity=st.none() | st.floats(0.0, 1.0),
    asserts=_str_map,
    ai_generated=st.booleans(),
    expires_at=st.none() | _millis,
)
_signals = st.builds(Signal, type=st.sampled_from(sorted(SIGNAL_TYPES)), attributes=_str_map)


@st.composite
def events(draw: st.DrawFn) -> AgentEvent:
    kind = draw(st.sampled_from(["proposal", "signal"]))
    channels = st.sampled_from(sorted(CHANNELS))
    return AgentEvent(
        event_id=draw(_text),
        customer_id=draw(_text),
        occurred_at=draw(_millis),
        kind=kind,
        agent=draw(_text),
        department=draw(st.text(max_size=10)),
        channel=draw(channels if kind == "proposal" else st.none() | channels),
        conversation_id=draw(_opt_text),
        trigger=draw(_opt_text),
        proposal=draw(_proposals) if kind == "proposal" else None,
        signal=draw(_signals) if kind == "signal" else None,
    )


@settings(max_examples=300, deadline=None)
@given(events())
def test_any_valid_event_round_trips(event: AgentEvent) -> None:
    for fmt in FORMATS:
        decoded = decode_event(key_of(event), encode_event(event, fmt), max_bytes=1 << 20)
        assert decoded == event
        assert dataclasses.asdict(decoded) == dataclasses.asdict(event)


def test_the_trusted_constructors_build_what_the_dataclasses_do():
    """Every field filled, in order, and the result still frozen and equal."""
    values = {
        Proposal: ("offer", "sales", 7, "hi", "o1", 9.5, 0.4, {"plan": "gold"}, True, 99),
        Signal: ("csat", {"score": "5"}),
    }
    values[AgentEvent] = ("e", "c", 1, "proposal", "a", "d", "email", "cv", "t", None, None)
    for cls, args in values.items():
        assert len(args) == len(dataclasses.fields(cls))
        built = trusted_constructor(cls)(*args)
        assert type(built) is cls and built == cls(*args)
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.__setattr__(dataclasses.fields(cls)[0].name, None)
