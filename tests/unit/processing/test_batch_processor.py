"""The worker's per-batch work without a broker: outputs, state writes, crash replays."""

from __future__ import annotations

import pytest

from pipeline.contracts.codec import decode_record
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.batch import (
    BatchProcessor,
    CorruptState,
    DictStateStore,
    InputRecord,
    unpack_stored,
)
from pipeline.settings import Settings

SETTINGS = Settings()


def inputs(n: int, malformed: int = 0) -> list[InputRecord]:
    records = AgentSimulator(customers=5, seed=2).records(n, malformed=malformed)
    return [InputRecord(r.key, r.value, 0, i, None) for i, r in enumerate(records)]


def processor() -> BatchProcessor:
    return BatchProcessor(SETTINGS, policy=lambda: DEFAULT_POLICY, clock=lambda: 1.0)


def by_topic(outputs):
    t = SETTINGS.topics
    names = {t.approved: "approved_action", t.audit: "audit_record", t.deadletter: "dead_letter"}
    out: dict[str, list[dict]] = {name: [] for name in names.values()}
    for o in outputs:
        if o.topic not in names:
            continue
        out[names[o.topic]].append(decode_record(names[o.topic], o.value))
    return out


def test_one_audit_per_valid_record_and_one_dead_letter_per_invalid():
    recs = inputs(200, malformed=7)
    result = processor().process_and_save(recs, DictStateStore())
    got = by_topic(result.outputs)
    assert len(got["audit_record"]) == 193
    assert len(got["dead_letter"]) == 7
    assert all(o.partition == 0 for o in result.outputs)


def test_state_is_read_and_written_once_per_customer_per_batch():
    store = DictStateStore()
    result = processor().process(inputs(100), store)
    keys = [w.key for w in result.state_writes]
    assert len(keys) == len(set(keys)) == 5
    assert store.data == {}  # nothing written until the caller applies state_writes


def test_records_already_in_the_stored_state_are_skipped_after_a_restart():
    recs = inputs(120)
    store = DictStateStore()
    first = processor().process_and_save(recs[:80], store)
    again = processor().process_and_save(recs, store)  # consumer restarted from offset 0
    audited_again = by_topic(again.outputs)["audit_record"]
    assert {a["source_offset"] for a in audited_again} == set(range(80, 120))
    assert by_topic(first.outputs)["audit_record"]
    watermark, _ = unpack_stored(store.data[recs[-1].key])
    assert watermark <= 119


def test_a_crash_before_the_state_write_re_emits_identical_records():
    recs = inputs(60)
    store = DictStateStore()
    lost = processor().process(recs, store)  # outputs published, state never written
    again = processor().process(recs, store)
    assert [o.value for o in again.outputs if o.topic == SETTINGS.topics.approved] == [
        o.value for o in lost.outputs if o.topic == SETTINGS.topics.approved
    ]


def test_held_proposals_go_out_once_when_their_wake_up_comes_back():
    from pipeline.contracts.codec import encode_event
    from pipeline.core.policy import HoldWindows, Policy
    from tests.factories import proposal

    policy = Policy(holds=HoldWindows(hold_ms={"message": 5_000}))
    bp = BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)
    events = [
        proposal(customer="c9", agent=f"bot-{i}", trigger="t", category="service", priority=p)
        for i, p in enumerate((20, 80, 40))
    ]
    recs = [InputRecord(b"c9", encode_event(e, "json"), 3, i, None) for i, e in enumerate(events)]
    store = DictStateStore()
    parked = bp.process_and_save(recs, store)
    wakeups = [o for o in parked.outputs if o.topic == SETTINGS.topics.wakeups]
    assert len(wakeups) == 1 and wakeups[0].partition == 3
    assert {a["outcome"] for a in by_topic(parked.outputs)["audit_record"]} == {"held"}

    wake = InputRecord(b"c9", wakeups[0].value, 3, 0, None)
    released = bp.release(wake, store)
    for w in released.state_writes:
        store.save(w.partition, w.key, w.value)
    got = by_topic(released.outputs)
    assert len(got["approved_action"]) == 1
    action = got["approved_action"][0]
    assert action["agents"][0] == "bot-1" and len(action["source_event_ids"]) == 3
    assert sorted(a["outcome"] for a in got["audit_record"]) == ["approved", "merged", "merged"]
    assert bp.release(wake, store).outputs == []  # a duplicate wake-up is a no-op


def test_after_a_restart_only_the_records_already_decided_are_skipped():
    """Re-delivered records up to the customer's watermark are skipped (their outputs were
    published); a replayed event id at a new offset is decided and audited `duplicate`,
    even though the state has seen the id."""
    recs = [r for r in inputs(120) if r.key == inputs(120)[0].key][:4]
    replay = InputRecord(recs[0].key, recs[0].value, recs[0].partition, recs[-1].offset + 1, None)
    store = DictStateStore()
    bp = processor()
    first = bp.process_and_save(recs[:3], store)
    again = bp.process_and_save([*recs, replay], store)  # restart from an older offset
    assert len(by_topic(first.outputs)["audit_record"]) == 3
    audits = by_topic(again.outputs)["audit_record"]
    assert [a["source_offset"] for a in audits] == [recs[3].offset, replay.offset]
    assert audits[-1]["outcome"] == "duplicate"
    assert bp.metrics.registry.get_sample_value("tower_reprocessed_skipped_total") == 3


def test_metrics_count_every_record_of_a_batch_by_the_batch_end():
    recs = inputs(200, malformed=7)
    proc = processor()
    result = proc.process_and_save(recs, DictStateStore())
    r = proc.metrics.registry
    audits = by_topic(result.outputs)["audit_record"]

    def total(name: str) -> float:
        return sum(s.value for m in r.collect() for s in m.samples if s.name == f"{name}_total")

    assert total("tower_events_in") == 200
    assert total("tower_dead_letters") == 7
    assert total("tower_decisions") == len(audits) == 193
    approved = sum(a["outcome"] == "approved" for a in audits)
    assert total("tower_approved_actions") == approved > 0
    by_outcome = (
        r.get_sample_value("tower_decisions_total", {"outcome": "approved", "rule": "-"}) or 0
    )
    assert by_outcome <= approved


def test_experiments_are_audited_and_counted_per_arm():
    """A holdout withholds half of one agent's proposals; the audit names each arm and the
    per-arm counters see the exposures and the purchases that follow inside the window."""
    from pipeline.contracts.codec import encode_event
    from pipeline.core.policy import Experiments, Policy
    from tests.factories import T0, proposal, signal

    no_opt_in = dict.fromkeys(("marketing", "sales", "service", "transactional"), False)
    experiments = Experiments(salt="s", holdouts={"winback-bot": 0.5})
    policy = Policy(opt_in_required=no_opt_in, caps=(), experiments=experiments)
    bp = BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)
    events = [proposal(f"c{i}", T0, agent="winback-bot") for i in range(40)]
    events += [signal("purchase", f"c{i}", T0 + 1, amount="10") for i in range(40)]
    recs = [
        InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, i, None)
        for i, e in enumerate(events)
    ]
    audits = by_topic(bp.process_and_save(recs, DictStateStore()).outputs)["audit_record"]
    arms = {a["customer_id"]: a["experiments"][0]["arm"] for a in audits if a["kind"] == "proposal"}
    withheld = {a["customer_id"] for a in audits if a["outcome"] == "withheld"}
    assert withheld == {c for c, arm in arms.items() if arm == "holdout"}
    assert 0 < len(withheld) < 40
    r = bp.metrics.registry

    def count(name: str, arm: str, **labels: str) -> float | None:
        return r.get_sample_value(
            f"{name}_total", {"experiment": "holdout:winback-bot", "arm": arm, **labels}
        )

    for arm, n in (("holdout", len(withheld)), ("treatment", 40 - len(withheld))):
        assert count("tower_experiment_exposures", arm) == n
        assert count("tower_experiment_outcomes", arm, metric="conversion") == n
        assert count("tower_experiment_outcome_values", arm, metric="revenue") == 10 * n


@pytest.mark.parametrize("state", [b'{"r":5}', b'{"r":"short"}', b'{"s":[1]}'])
def test_a_replay_memory_of_the_wrong_shape_is_a_corrupt_state(state: bytes) -> None:
    with pytest.raises(CorruptState):
        unpack_stored(b"\x00" * 8 + state)


def test_a_corrupt_stored_state_dead_letters_that_customer_and_no_one_else():
    """Poison state: the customer whose stored state does not decode gets every event
    dead-lettered (reason corrupt_state); the others' events are decided as before."""
    recs = inputs(120)
    store = DictStateStore()
    bp = processor()
    bp.process_and_save(recs[:60], store)
    victim = recs[0].key
    store.data[victim] = b"\x00\x00\x00\x00\x00\x00\x00\x07{not json"
    result = bp.process_and_save(recs[60:], store)
    got = by_topic(result.outputs)
    dead = got["dead_letter"]
    assert dead and {d["reason"] for d in dead} == {"corrupt_state"}
    assert {d["raw_key"] for d in dead} == {victim}
    assert len(dead) == sum(r.key == victim for r in recs[60:])
    assert "does not decode" in dead[0]["detail"] and "tombstone" in dead[0]["detail"]
    assert {a["customer_id"].encode() for a in got["audit_record"]} == {
        r.key for r in recs[60:] if r.key != victim
    }
    assert store.data[victim].endswith(b"{not json")  # left for the operator to repair
    sample = bp.metrics.registry.get_sample_value
    assert sample("tower_dead_letters_total", {"reason": "corrupt_state"}) == len(dead)


def parked_hold(bp: BatchProcessor, store: DictStateStore) -> InputRecord:
    """A hold parked for customer c9 on partition 3: the wake-up record that releases it."""
    from pipeline.contracts.codec import encode_event
    from tests.factories import proposal

    event = proposal(customer="c9", agent="bot-0", trigger="t", category="service")
    parked = bp.process_and_save(
        [InputRecord(b"c9", encode_event(event, "json"), 3, 0, None)], store
    )
    (wakeup,) = [o for o in parked.outputs if o.topic == SETTINGS.topics.wakeups]
    return InputRecord(b"c9", wakeup.value, 3, 17, 1234)


def holding_processor() -> BatchProcessor:
    from pipeline.core.policy import HoldWindows, Policy

    policy = Policy(holds=HoldWindows(hold_ms={"message": 5_000}))
    return BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (b"{not json", "unexpected character"),
        (None, "Input is a zero-length"),
        (b'{"hold_id": "h-1"}', "customer_id"),
        (b'{"customer_id": "c9"}', "hold_id"),
        (b'["c9", "h-1"]', "list indices"),
        (b'"c9"', "string indices"),
    ],
    ids=["not-json", "empty", "no-customer", "no-hold", "a-list", "a-string"],
)
def test_a_wake_up_that_does_not_parse_is_dead_lettered_and_changes_nothing(value, detail):
    """A wake-up record someone else wrote (or a broken one) never stops the worker: it is
    dead-lettered as bad_wakeup, citing the wake-up topic, and the hold stays parked."""
    bp, store = holding_processor(), DictStateStore()
    wake = parked_hold(bp, store)
    before = dict(store.data)
    result = bp.release(InputRecord(b"c9", value, 3, 18, 1235), store)
    assert result.state_writes == []
    assert [o.topic for o in result.outputs] == [SETTINGS.topics.deadletter]
    (dead,) = by_topic(result.outputs)["dead_letter"]
    assert (dead["reason"], dead["source_topic"]) == ("bad_wakeup", SETTINGS.topics.wakeups)
    assert (dead["source_partition"], dead["source_offset"]) == (3, 18)
    assert detail in dead["detail"], dead["detail"]
    assert store.data == before
    sample = bp.metrics.registry.get_sample_value
    assert sample("tower_dead_letters_total", {"reason": "bad_wakeup"}) == 1
    released = by_topic(bp.release(wake, store).outputs)  # the real wake-up still releases it
    assert len(released["approved_action"]) == 1


def test_a_wake_up_for_a_customer_whose_state_is_corrupt_is_dead_lettered():
    """Poison state on the wake-up path: the wake-up is dead-lettered (corrupt_state,
    citing the wake-up topic), nothing is released or written, and the state is left for
    the operator."""
    bp, store = holding_processor(), DictStateStore()
    wake = parked_hold(bp, store)
    store.data[b"c9"] = b"\x00\x00\x00\x00\x00\x00\x00\x07{not json"
    result = bp.release(wake, store)
    assert result.state_writes == []
    got = by_topic(result.outputs)
    assert got["approved_action"] == [] and got["audit_record"] == []
    (dead,) = got["dead_letter"]
    assert (dead["reason"], dead["source_topic"]) == ("corrupt_state", SETTINGS.topics.wakeups)
    assert (dead["source_partition"], dead["source_offset"]) == (3, 17)
    assert "does not decode" in dead["detail"]
    assert store.data[b"c9"].endswith(b"{not json")
    sample = bp.metrics.registry.get_sample_value
    assert sample("tower_dead_letters_total", {"reason": "corrupt_state"}) == 1


class Recorder:
    """A decision index that only counts how it is called."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, str, object]]] = []

    def record(self, decided) -> None:
        self.batches.append(list(decided))


def test_the_index_hears_of_a_batch_s_decisions_once_at_its_end():
    bp = processor()
    bp.index = recorder = Recorder()
    records = inputs(300, malformed=3)
    result = bp.process(records, DictStateStore())
    audits = by_topic(result.outputs)["audit_record"]
    assert len(recorder.batches) == 1  # one call per batch, not one per decision
    decided = recorder.batches[0]
    assert [event_id for _, event_id, _ in decided] == [a["event_id"] for a in audits]
    assert all(d.event_id == event_id for _, event_id, d in decided)
    bp.process([], DictStateStore())
    assert len(recorder.batches) == 1  # nothing decided, nothing handed over
