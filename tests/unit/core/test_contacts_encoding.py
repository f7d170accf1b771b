"""The stored form of a customer's contacts: each kind once, a time delta and an index per
contact, in order; the older form (one list per contact) still reads."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.state import EMPTY_STATE, Contact, CustomerState
from pipeline.processing.batch import CorruptState, pack_stored, unpack_stored

T = 1_900_000_000_000
EMAIL = ("email", "marketing", "sales")
SMS = ("sms", "service", "support")


@pytest.mark.parametrize(
    ("contacts", "stored"),
    [
        ((), None),  # none: nothing written
        (((T, *EMAIL),), [[list(EMAIL)], [T], [0]]),
        (
            ((T, *EMAIL), (T + 60_000, *SMS), (T + 90_000, *EMAIL)),
            [[list(EMAIL), list(SMS)], [T, 60_000, 30_000], [0, 1, 0]],
        ),
        # decided out of event-time order: a negative delta, the order kept
        (((T, *SMS), (T - 5_000, *SMS)), [[list(SMS)], [T, -5_000], [0, 0]]),
    ],
)
def test_contacts_are_stored_as_kinds_deltas_and_indexes(contacts, stored):
    state = EMPTY_STATE.evolve(contacts=tuple(Contact(*c) for c in contacts))
    raw = orjson.loads(state.to_bytes())
    assert raw.get("kc") == stored
    assert "k" not in raw
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_the_older_form_still_reads_and_is_written_in_the_new_one():
    old = CustomerState.from_bytes(orjson.dumps({"k": [[T, *EMAIL], [T + 1, *SMS]], "n": 2}))
    assert old.contacts == (Contact(T, *EMAIL), Contact(T + 1, *SMS))
    assert CustomerState.from_bytes(old.to_bytes()) == old


@pytest.mark.parametrize(
    "kc",
    [
        [[list(EMAIL)], [T, 1], [0]],  # a time without a kind
        [[list(EMAIL)], [T], [1]],  # an index past the kinds
        [[list(EMAIL)], [T], [-1]],
        [[["email", "marketing"]], [T], [0]],  # a kind of two fields
        [[list(EMAIL)], [T]],
        "not a list",
    ],
)
def test_a_wrong_shape_is_a_corrupt_state(kc):
    raw = pack_stored(7, EMPTY_STATE)[:8] + orjson.dumps({"kc": kc, "n": 1})
    with pytest.raises(CorruptState):
        unpack_stored(raw)


kinds = st.sampled_from([EMAIL, SMS, ("push", "offer", "sales"), ("chat", "", "")])


@given(st.lists(st.tuples(st.integers(0, 2**53), kinds), max_size=80))
def test_any_contacts_survive_the_round_trip_in_order(contacts):
    state = EMPTY_STATE.evolve(contacts=tuple(Contact(at, *k) for at, k in contacts))
    assert CustomerState.from_bytes(state.to_bytes()).contacts == state.contacts
