"""Decoded states kept between batches: a hit only for the very bytes packed, and the same
outputs and state bytes as decoding every load."""

from __future__ import annotations

from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.state import EMPTY_STATE
from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.processing.stored_state import DecodedStates, pack_stored, unpack_stored
from pipeline.settings import Settings


def batches(n: int, size: int, customers: int = 6) -> list[list[InputRecord]]:
    records = AgentSimulator(customers=customers, seed=5).records(n, malformed=3)
    inputs = [InputRecord(r.key, r.value, 0, i, None) for i, r in enumerate(records)]
    return [inputs[i : i + size] for i in range(0, n, size)]


def processor() -> BatchProcessor:
    return BatchProcessor(Settings(), policy=lambda: DEFAULT_POLICY, clock=lambda: 1.0)


def test_a_hit_is_the_state_packed_and_other_bytes_are_decoded():
    states = DecodedStates()
    state = EMPTY_STATE.evolve(events=3, timezone="UTC")
    raw = states.pack(0, b"c1", 41, state)
    assert raw == pack_stored(41, state)
    hit = states.unpack(0, b"c1", bytes(raw))  # equal bytes, another object
    assert hit[0] == 41 and hit[1] is state
    other = pack_stored(50, state.evolve(events=4))
    assert states.unpack(0, b"c1", other) == unpack_stored(other)
    assert states.unpack(1, b"c1", raw)[1] is not state  # another partition's key
    assert states.unpack(0, b"c1", None) == (-1, EMPTY_STATE)


def test_the_least_recently_packed_customer_is_forgotten_first():
    states = DecodedStates(capacity=2)
    packed = {key: EMPTY_STATE.evolve(events=len(key)) for key in (b"a", b"bb", b"ccc")}
    raws = {key: states.pack(0, key, 1, packed[key]) for key in (b"a", b"bb")}
    raws[b"a"] = states.pack(0, b"a", 1, packed[b"a"])  # a is now the most recent
    raws[b"ccc"] = states.pack(0, b"ccc", 1, packed[b"ccc"])
    kept = {key for key in packed if states.unpack(0, key, raws[key])[1] is packed[key]}
    assert kept == {b"a", b"ccc"}


def test_outputs_and_state_bytes_match_decoding_every_load():
    """One processor across batches (its decoded states hit) against a fresh processor per
    batch (every load decoded), both on their own store."""
    kept, fresh = DictStateStore(), DictStateStore()
    one = processor()
    for batch in batches(600, 40):
        a = one.process_and_save(batch, kept)
        b = processor().process_and_save(batch, fresh)
        assert a.outputs == b.outputs
        assert a.state_writes == b.state_writes
    assert kept.data == fresh.data


def test_a_state_someone_else_wrote_is_the_one_decided_on():
    """After a rebalance another worker may have moved a customer's state on: its bytes,
    not the state this worker packed last, are what the next event is decided on."""
    work = batches(300, 50, customers=3)
    mine, theirs = DictStateStore(), DictStateStore()
    one = processor()
    one.process_and_save(work[0], mine)
    other = processor()
    for batch in work[:3]:
        other.process_and_save(batch, theirs)
    mine.data = dict(theirs.data)  # the other worker's states, as a restore would load them
    a = one.process_and_save(work[3], mine)
    b = processor().process_and_save(work[3], theirs)
    assert a.outputs == b.outputs and a.state_writes == b.state_writes
