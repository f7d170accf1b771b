"""`CustomerState.from_bytes` reads only the fields stored, and reads them as the reading of
every field in order (kept below as the reference) did: the same state, or the same error
(a corrupt state's dead letter names it), on real stored states and damaged ones."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.state import (
    EMPTY_JOURNEY,
    ActiveOffer,
    ConsentMark,
    CustomerState,
    Exposure,
    Fact,
    Handoff,
    Hold,
    Journey,
    TriggerMemo,
    _contacts,
    _replay_memory,
)


def reference(raw: bytes) -> CustomerState:
    """Every field read in order, absent ones as their defaults."""
    d = orjson.loads(raw)
    offer = d.get("o")
    handoff = d.get("ho")
    return CustomerState(
        consents={k: ConsentMark(v[0], v[1]) for k, v in d.get("c", {}).items()},
        contacts=_contacts(d),
        triggers={k: TriggerMemo(*v) for k, v in d.get("t", {}).items()},
        seen=_replay_memory(d),
        events=d.get("n", 0),
        open_cases=d.get("oc", {}),
        complaint_at=d.get("ca"),
        facts={k: Fact(*v) for k, v in d.get("f", {}).items()},
        timezone=d.get("tz"),
        offer=None if offer is None else ActiveOffer(*offer),
        journey=Journey.from_dict(d["j"]) if "j" in d else EMPTY_JOURNEY,
        holds={k: Hold(v[0], v[1], tuple(v[2])) for k, v in d.get("h", {}).items()},
        inbound=tuple(d.get("in", ())),
        negative_streak=d.get("ns", 0),
        handoff=None if handoff is None else Handoff(*handoff),
        known=d.get("kn", {}),
        disclosed=d.get("di", {}),
        exposures={k: Exposure(*v) for k, v in d.get("ex", {}).items()},
    )


def read(how: Any, raw: bytes) -> Any:
    try:
        return how(raw)
    except Exception as exc:
        return (type(exc), str(exc))


@cache
def stored_states() -> list[dict[str, Any]]:
    """The states of a simulated run with every rule on, holds and experiments included."""
    from bench.batch_speed import FULL_POLICY_FILE, batches
    from pipeline.core.policy_document import load_policy
    from pipeline.processing.batch import BatchProcessor, DictStateStore
    from pipeline.settings import Settings

    policy = load_policy(FULL_POLICY_FILE.read_text())
    store = DictStateStore()
    processor = BatchProcessor(Settings(), lambda: policy)
    for batch in batches(3000, 150, 4, 250):
        processor.process_and_save(batch, store)
    return [orjson.loads(v[8:]) for v in store.data.values()]


def test_the_stored_states_read_as_the_reference_reads_them() -> None:
    for d in stored_states():
        raw = orjson.dumps(d)
        assert CustomerState.from_bytes(raw) == reference(raw)


def test_every_field_written_reads_back() -> None:
    state = CustomerState(
        consents={"sms:all": ConsentMark(1, True)},
        triggers={"t": TriggerMemo(2, "d", None)},
        events=3,
        open_cases={"c": 4},
        complaint_at=5,
        facts={"f": Fact("v", "a", 6)},
        timezone="Europe/Berlin",
        offer=ActiveOffer(7, "o", "a", 0.5, "d"),
        holds={"h": Hold("k", 9, ())},
        inbound=(10,),
        negative_streak=2,
        handoff=Handoff(11, "r", None),
        known={"k": "v"},
        disclosed={"d": 12},
        exposures={"x": Exposure("arm", 13)},
    )
    raw = state.to_bytes()
    assert CustomerState.from_bytes(raw) == reference(raw)
    assert CustomerState.from_bytes(raw).to_bytes() == raw


_junk = st.one_of(
    st.none(), st.integers(0, 9), st.text(max_size=3), st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=2),
)  # fmt: skip
_keys = st.sampled_from(
    ["c", "kc", "k", "t", "r", "s", "n", "oc", "ca", "f", "tz", "o", "j", "h", "in", "ns",
     "ho", "kn", "di", "ex", "zz"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_damaged_states_fail_as_the_reference_fails(data: st.DataObject) -> None:
    d = dict(data.draw(st.sampled_from(stored_states())))
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(_keys)
        if data.draw(st.booleans()) and key in d:
            del d[key]
        else:
            d[key] = data.draw(_junk)
    raw = orjson.dumps(d)
    assert read(CustomerState.from_bytes, raw) == read(reference, raw)


def test_not_an_object_fails_as_the_reference_fails() -> None:
    for raw in (b"[1]", b"1", b'"x"', b"null"):
        assert read(CustomerState.from_bytes, raw) == read(reference, raw)
