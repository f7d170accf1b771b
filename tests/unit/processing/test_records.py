"""The audit record written straight from the decision (`audit_avro`) is byte for byte the
encoding of the audit record's dict (`audit_record`), on any decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.codec import avro_header, encode_record
from pipeline.contracts.events import AgentEvent, Source
from pipeline.core.decision import ApprovedAction, Decision, RuleStep
from pipeline.processing import records
from pipeline.processing.records import audit_avro, audit_record
from tests.unit.contracts.test_codec import events

_text = st.text(max_size=80)  # past 63 bytes a string's length takes two varint bytes
_opt = st.none() | _text
_long = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_steps = st.builds(RuleStep, _text, st.sampled_from(["pass", "block", "defer"]), _text)
_actions = st.builds(
    ApprovedAction,
    action_id=_text,
    decision_id=_text,
    customer_id=_text,
    channel=_opt,
    action=_text,
    category=_text,
    content=_opt,
    offer_id=_opt,
    offer_value=st.none() | st.floats(allow_nan=False),
    conversation_id=_opt,
    asserts=st.dictionaries(_text, _text, max_size=2),
    source_event_ids=st.tuples(_text),
    agents=st.tuples(_text),
    decided_at=_long,
    not_before=st.none() | _long,
    policy_version=_text,
)
_decisions = st.builds(
    Decision,
    decision_id=_text,
    event_id=_text,
    customer_id=_text,
    outcome=_text,
    rule=_opt,
    reason=st.text(max_size=300),
    trace=st.lists(_steps, max_size=70).map(tuple),  # past 63 items: a two-byte count
    policy_version=_text,
    decided_at=_long,
    action=st.none() | _actions,
    merged_into=_opt,
    experiments=st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
)
_sources = st.builds(
    Source,
    topic=_text,
    partition=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    offset=_long,
    timestamp_ms=st.none() | _long,
)


@settings(max_examples=300, deadline=None)
@given(_decisions, events(), _sources, _long)
def test_the_audit_written_from_the_decision_is_the_audit_records_encoding(
    decision: Decision, event: AgentEvent, source: Source, processed_at: int
) -> None:
    record = audit_record(decision, event, source, processed_at)
    header = avro_header("audit_record", "avro")
    assert header is not None
    expected = encode_record("audit_record", record, "avro")
    assert header + audit_avro(decision, event, source, processed_at) == expected
    # again, now that its trace steps are cached
    assert header + audit_avro(decision, event, source, processed_at) == expected


def test_the_remembered_encodings_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(records, "_REMEMBERED_MAX", 3)
    for i in range(10):
        step = RuleStep("rule", "pass", str(i))
        assert records._step(step) == b"\x08rule\x08pass\x02" + str(i).encode()
        assert records._text(str(i)) == b"\x02" + str(i).encode()
        assert records._opt_text(str(i)) == b"\x02\x02" + str(i).encode()
        assert len(records._STEPS) <= 3 and len(records._TEXTS) <= 3
        assert len(records._OPT_TEXTS) <= 3 and records._OPT_TEXTS[None] == b"\x00"


def test_the_header_is_the_one_encode_record_writes() -> None:
    record = audit_record(
        Decision("d", "e", "c", "approved", None, "ok", (), "v1", 1),
        AgentEvent("e", "c", 1, "signal", "a", "d", None, None, None, None, None),
        Source("t", 0, 1, None),
        2,
    )
    for fmt, schema_id in (("avro", None), ("registry-avro", 7)):
        header = avro_header("audit_record", fmt, schema_id)
        assert header is not None
        assert encode_record("audit_record", record, fmt, schema_id).startswith(header)
    assert avro_header("audit_record", "json") is None
    assert avro_header("audit_record", "registry-avro", None) is None
