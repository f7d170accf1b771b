"""Decisions kept with the state: a new index (a restarted or rebalanced worker) finds the
newest `size` final decisions of a partition in the store alone, the first final decision
of an event, never a held or duplicate one; partitions never mix; writes stay bounded."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.codec import encode_event
from pipeline.core.decision import APPROVED, DUPLICATE, HELD, SUPPRESSED, Decision
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.processing.decision_index import decision_body
from pipeline.processing.kept_decisions import CHUNK, PREFIX, KeptDecisions, find_kept
from pipeline.settings import Settings
from tests.factories import proposal


def decided(event_id: str, outcome: str = APPROVED, customer: str = "ana") -> Decision:
    event = proposal(customer, event_id=event_id)
    return Decision.for_event(event, f"d-{event_id}", "v1", 0, outcome, None, "why", ())


def keep(kept: KeptDecisions, store: DictStateStore, batch: list[tuple[int, Decision]]) -> int:
    """Record a batch and save its writes; the number of writes."""
    for partition, decision in batch:
        kept.record(partition, decision)
    writes = kept.writes(store)
    for partition, key, value in writes:
        store.save(partition, key, value)
    return len(writes)


def find(store: DictStateStore, size: int, partition: int, event_id: str) -> dict | None:
    async def load(p: int, key: bytes) -> bytes | None:
        return store.load(p, key)

    return asyncio.run(find_kept(load, size, partition, event_id))


def test_what_is_found_after_a_restart() -> None:
    store = DictStateStore()
    keep(KeptDecisions(100), store, [(0, decided("e1")), (0, decided("e2", HELD))])
    keep(KeptDecisions(100), store, [(0, decided("e2", SUPPRESSED)), (0, decided("e1", DUPLICATE))])
    keep(KeptDecisions(100), store, [(3, decided("e3", customer="bo"))])
    for partition, event_id, expected in [
        (0, "e1", decision_body(decided("e1"))),  # the retry's duplicate is not kept
        (0, "e2", decision_body(decided("e2", SUPPRESSED))),  # released, not held
        (3, "e3", decision_body(decided("e3", customer="bo"))),
        (0, "e3", None),  # another partition's
        (0, "never", None),
        (5, "e1", None),  # nothing kept there
    ]:
        assert find(store, 100, partition, event_id) == expected


def test_a_batch_writes_its_current_chunk_and_those_it_filled() -> None:
    store, kept = DictStateStore(), KeptDecisions(10 * CHUNK)
    for n, expected in [(1, 1), (CHUNK - 1, 1), (1, 2), (2 * CHUNK, 3), (CHUNK - 1, 1)]:
        batch = [(0, decided(f"e{i}-{n}")) for i in range(n)]
        assert keep(kept, store, batch) == expected
    assert all(key.startswith(PREFIX) for key in store.data)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 3 * CHUNK),
    batches=st.lists(st.integers(1, 2 * CHUNK), min_size=1, max_size=12),
)
def test_the_newest_size_decisions_are_found_and_the_store_stays_bounded(
    size: int, batches: list[int]
) -> None:
    store, kept = DictStateStore(), KeptDecisions(size)
    ids: list[str] = []
    for b, n in enumerate(batches):
        batch = [(1, decided(f"e{b}-{i}")) for i in range(n)]
        ids.extend(d.event_id for _, d in batch)
        keep(kept, store, batch)
    for event_id in ids[-size:]:
        found = find(store, size, 1, event_id)
        assert found is not None and found["event_id"] == event_id
    for event_id in ids[:-size]:  # the horizon: the newest `size`, as the index's
        assert find(store, size, 1, event_id) is None
    assert len(store.data) <= kept.slots + 1  # the full chunks' slots and the current one


def test_the_processor_keeps_what_it_decides() -> None:
    settings_ = Settings(partitions=8)
    processor = BatchProcessor(settings_, policy=lambda: DEFAULT_POLICY)
    processor.kept = KeptDecisions(100)
    store = DictStateStore()
    event = proposal("ana", event_id="p1")
    record = InputRecord(b"ana", encode_event(event, "json"), 2, 0, None)
    processor.process_and_save([record], store)
    found = find(store, 100, 2, "p1")
    assert found is not None and found["customer_id"] == "ana" and found["status"] == "decided"
