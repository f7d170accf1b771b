"""`CustomerState.from_bytes` reads only the fields stored, and reads them as the reading of
every field in order (kept below as the reference) did: the same state, or the same error
(a corrupt state's dead letter names it), on real stored states and damaged ones."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.policy import (
    DAY_MS,
    HOUR_MS,
    OfferArbitration,
    Policy,
)
from pipeline.core.state import (
    EMPTY_JOURNEY,
    EMPTY_STATE,
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
from tests.factories import T0, consent, decide_all, proposal, signal


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


NO_CAPS = Policy(caps=())


def run(events, policy=NO_CAPS):
    return decide_all(events, policy)


def said(agent, at, **facts):
    return proposal(category="service", department="service", agent=agent, at=at, asserts=facts)


def test_extended_state_round_trips_and_empty_fields_stay_out_of_the_bytes():
    policy = Policy(caps=(), offers=OfferArbitration(DAY_MS))
    events = [
        consent(True),
        signal("case_opened", at=T0 + 1, case_id="k1"),
        signal("sentiment", at=T0 + 2, score="-0.9"),
        signal("profile_updated", at=T0 + 3, timezone="Europe/Paris"),
        said("care-bot", T0 + 4, price="10"),
        proposal(at=T0 + 5, category="service", action="offer", offer_id="a"),
    ]
    _, state = run(events, policy)
    assert state.open_cases and state.complaint_at and state.facts and state.timezone
    assert state.offer is not None
    assert CustomerState.from_bytes(state.to_bytes()) == state
    plain = run([consent(True), proposal(at=T0 + HOUR_MS)])[1].to_bytes()
    for key in (b'"oc"', b'"ca"', b'"f"', b'"tz"', b'"o"'):
        assert key not in plain


def test_old_state_bytes_still_read():
    old = b'{"c":{"*:all":[1,true]},"k":[],"t":{},"s":{"e1":"d-1"},"n":1}'
    state = CustomerState.from_bytes(old)
    assert "e1" in state.seen and len(state.seen) == 1
    assert state.facts == {} and state.offer is None and state.timezone is None


def test_evolve_knows_every_state_field():
    full = CustomerState.from_bytes(
        b'{"c":{"*:all":[1,true]},"k":[[1,"email","service","service"]],"t":{"t":[1,"d","a"]},'
        b'"s":{"e":"d"},"n":3,"oc":{"k":1},"ca":2,"f":{"p":["1","a",1]},"tz":"UTC",'
        b'"o":[1,"x","a",1.0,"d"],"j":{"ra":1},"h":{"h-1":["t",5,["{}"]]},"in":[4],"ns":2,'
        b'"ho":[3,"repeat contact",null],"kn":{"email":"x@y.z"},"di":{"cv:1":5},'
        b'"ex":{"control_group":["control",1]},"cx":{"e":"00-1-1-01"}}'
    )
    names = CustomerState.__struct_fields__
    assert all(getattr(full, n) != getattr(EMPTY_STATE, n) for n in names)
    assert full.evolve() == full
    for name in names:
        changed = full.evolve(**{name: getattr(EMPTY_STATE, name)})
        assert [n for n in names if getattr(changed, n) != getattr(full, n)] == [name]


def test_new_state_fields_round_trip():
    state = EMPTY_STATE.evolve(
        inbound=(T0, T0 + 1),
        negative_streak=2,
        handoff=Handoff(T0, "why", "a-1"),
        known={"order_number": "A-1"},
        disclosed={"cv:c-1": T0},
    )
    assert CustomerState.from_bytes(state.to_bytes()) == state
    assert b"ho" not in EMPTY_STATE.to_bytes()


def test_state_round_trips_through_bytes():
    events = [consent(True), proposal(at=T0 + 1, trigger="t"), proposal(at=T0 + 2)]
    _, state = run(events, Policy())
    assert CustomerState.from_bytes(state.to_bytes()) == state
