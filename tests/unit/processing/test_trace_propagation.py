"""An input's trace context on every record it causes, held proposals included; one span
per batch, linked to its inputs' spans."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.contracts.codec import decode_record, encode_event
from pipeline.core.policy import DEFAULT_POLICY, HoldWindows, Policy
from pipeline.core.state import CustomerState
from pipeline.processing.batch import (
    BatchProcessor,
    DictStateStore,
    InputRecord,
    OutputRecord,
    output_headers,
    unpack_stored,
)
from pipeline.settings import Settings
from tests.factories import proposal

SETTINGS = Settings()
T = SETTINGS.topics
HOLDS = Policy(holds=HoldWindows(hold_ms={"message": 5_000}))


def parent(n: int) -> bytes:
    return f"00-{n + 1:032x}-{n + 1:016x}-01".encode()


def ctx(n: int) -> tuple[tuple[str, bytes], ...]:
    return (("traceparent", parent(n)), ("tracestate", f"tower=t{n}".encode()))


def record(event, offset: int, headers=None, partition: int = 0) -> InputRecord:
    value = encode_event(event, "json")
    return InputRecord(event.customer_id.encode(), value, partition, offset, None, headers)


def processor(policy: Policy = DEFAULT_POLICY) -> BatchProcessor:
    return BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)


def audits(outputs: list[OutputRecord]) -> list[tuple[dict, OutputRecord]]:
    return [(decode_record("audit_record", o.value), o) for o in outputs if o.topic == T.audit]


def test_the_action_and_the_audit_carry_the_inputs_trace_context():
    e = proposal(customer="c1", category="service")
    out = processor().process_and_save([record(e, 0, list(ctx(1)))], DictStateStore()).outputs
    topics = {o.topic for o in out}
    assert T.approved in topics and T.audit in topics
    assert all(o.headers == ctx(1) for o in out)


def test_an_input_without_headers_causes_records_without_headers():
    e = proposal(customer="c1", category="service")
    out = processor().process_and_save([record(e, 0)], DictStateStore()).outputs
    assert out and all(o.headers is None for o in out)


def test_a_malformed_traceparent_is_decided_carried_nowhere_and_counted():
    bp = processor()
    events = [proposal(customer=f"c{i}", category="service") for i in range(3)]
    recs = [
        record(events[0], 0, [("traceparent", b"nonsense"), ("tracestate", b"a=1")]),
        record(events[1], 1, [("traceparent", parent(0)[:-1])]),
        record(events[2], 2, list(ctx(2))),
    ]
    out = bp.process_and_save(recs, DictStateStore()).outputs
    got = {a["event_id"]: o.headers for a, o in audits(out)}
    assert got == {events[0].event_id: None, events[1].event_id: None, events[2].event_id: ctx(2)}
    assert bp.metrics.registry.get_sample_value("tower_trace_context_invalid_total") == 2


def test_a_dead_letter_carries_the_trace_context_of_the_record_it_holds():
    bad = InputRecord(b"c1", b"{not json", 0, 0, None, list(ctx(3)))
    out = processor().process_and_save([bad], DictStateStore()).outputs
    assert [(o.topic, o.headers) for o in out] == [(T.deadletter, ctx(3))]


def test_each_released_proposal_carries_its_own_context_after_a_restart():
    """Held proposals keep their context in the customer state: a worker that restarts
    (a new processor on the stored bytes) releases the winner with the winner's context."""
    events = [
        proposal(customer="c9", agent=f"bot-{i}", trigger="t", category="service", priority=p)
        for i, p in enumerate((20, 80, 40))
    ]
    store = DictStateStore()
    recs = [record(e, i, list(ctx(i)), partition=3) for i, e in enumerate(events)]
    parked = processor(HOLDS).process_and_save(recs, store).outputs
    (wakeup,) = [o for o in parked if o.topic == T.wakeups]
    assert wakeup.headers == ctx(0)  # the wake-up: the proposal that opened the hold
    assert [o.headers for _, o in audits(parked)] == [ctx(0), ctx(1), ctx(2)]  # `held`

    restarted = processor(HOLDS)  # nothing in memory: only the stored state
    wake = InputRecord(b"c9", wakeup.value, 3, 0, None, list(wakeup.headers or ()))
    released = restarted.release(wake, store)
    (action,) = [o for o in released.outputs if o.topic == T.approved]
    assert decode_record("approved_action", action.value)["agents"][0] == "bot-1"
    assert action.headers == ctx(1)  # the winner's
    got = {a["event_id"]: (a["outcome"], o.headers) for a, o in audits(released.outputs)}
    assert got == {
        events[0].event_id: ("merged", ctx(0)),
        events[1].event_id: ("approved", ctx(1)),
        events[2].event_id: ("merged", ctx(2)),
    }
    (write,) = released.state_writes
    assert unpack_stored(write.value)[1].carried == {}  # released: nothing kept


def test_a_hold_released_by_a_later_input_carries_the_winners_context():
    held = proposal(customer="c9", at=1_000, trigger="t", category="service")
    later = proposal(customer="c9", at=60_000, trigger="u", category="service", channel="sms")
    bp, store = processor(HOLDS), DictStateStore()
    bp.process_and_save([record(held, 0, list(ctx(5)))], store)
    out = bp.process_and_save([record(later, 1)], store).outputs
    got = {(a["event_id"], a["outcome"]): o.headers for a, o in audits(out)}
    assert got[(held.event_id, "approved")] == ctx(5)
    assert got[(later.event_id, "held")] is None


def test_proposals_held_without_a_context_keep_the_state_as_it_was():
    e = proposal(customer="c9", trigger="t", category="service")
    store = DictStateStore()
    processor(HOLDS).process_and_save([record(e, 0)], store)
    state = unpack_stored(store.data[b"c9"])[1]
    assert state.holds and state.carried == {}
    assert b'"cx"' not in state.to_bytes()
    assert CustomerState.from_bytes(state.to_bytes()) == state


@pytest.mark.parametrize(
    ("trace", "chain", "written"),
    [
        (None, None, None),
        (None, [("tower-prev", b"h")], [("tower-prev", b"h")]),
        (ctx(1), None, list(ctx(1))),
        (ctx(1), [("tower-prev", b"h")], [*ctx(1), ("tower-prev", b"h")]),
    ],
)
def test_the_headers_a_runtime_writes(trace, chain, written):
    out = OutputRecord(T.audit, b"k", b"v", 0, trace)
    assert output_headers(out, chain) == written


def test_one_span_per_batch_linked_to_the_spans_of_its_inputs():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bp = processor()
    bp.tracer = provider.get_tracer("test")
    events = [proposal(customer=f"c{i}", category="service") for i in range(4)]
    recs = [record(e, i, list(ctx(i)) if i != 2 else None) for i, e in enumerate(events)]
    bp.process_and_save(recs[:3], DictStateStore())
    bp.process_and_save(recs[3:], DictStateStore())
    first, second = exporter.get_finished_spans()
    assert first.name == second.name == "tower.decide"
    assert first.attributes["messaging.batch.message_count"] == 3
    linked = [(link.context.trace_id, link.context.span_id) for link in first.links]
    assert linked == [(1, 1), (2, 2)]
    assert first.links[0].context.trace_state.get("tower") == "t0"
    assert [link.context.trace_id for link in second.links] == [4]
    assert first.context.trace_id not in (1, 2)  # its own trace: a batch has many parents


def test_without_an_sdk_the_span_records_nothing():
    bp = processor()
    e = proposal(customer="c1", category="service")
    assert bp.process_and_save([record(e, 0, list(ctx(1)))], DictStateStore()).outputs
    assert not bp.tracer.start_span("probe").is_recording()


@pytest.mark.parametrize("headers", [None, []])
def test_an_input_without_headers_costs_no_trace_work(monkeypatch: pytest.MonkeyPatch, headers):
    def no_trace_work(*args: object) -> None:
        raise AssertionError("trace headers were looked for on an input that has none")

    monkeypatch.setattr("pipeline.processing.batch.trace_headers", no_trace_work)
    events = [proposal(customer=f"c{i}", category="service") for i in range(3)]
    result = processor().process_and_save(
        [record(e, i, headers) for i, e in enumerate(events)], DictStateStore()
    )
    assert result.outputs and all(out.headers is None for out in result.outputs)
    # and the runtimes write them without a header list, the seal's aside
    assert all(output_headers(out, None) is None for out in result.outputs)
