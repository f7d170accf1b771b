"""The replay memory: fixed-width digests in one string, oldest first, bounded by count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.decision import decision_id_for
from pipeline.core.state import DIGEST_CHARS, CustomerState, ReplayMemory, _digest


@pytest.mark.parametrize(
    ("added", "limit", "inside", "outside"),
    [
        ([], 3, [], ["a"]),
        (["a"], 3, ["a"], ["b"]),
        (["a", "b", "c"], 3, ["a", "b", "c"], ["d"]),
        (["a", "b", "c", "d"], 3, ["b", "c", "d"], ["a"]),
        (["a", "b", "c", "d"], 1, ["d"], ["a", "b", "c"]),
        (["über", "id with spaces", "x" * 500], 3, ["über", "id with spaces", "x" * 500], ["x"]),
    ],
)
def test_remembers_the_last_ids_up_to_the_limit(
    added: list[str], limit: int, inside: list[str], outside: list[str]
) -> None:
    memory = ReplayMemory()
    for event_id in added:
        memory = memory.remember(event_id, limit)
    assert len(memory) == min(len(added), limit)
    assert all(e in memory for e in inside)
    assert not any(e in memory for e in outside)


def test_a_digest_straddling_two_entries_is_no_match() -> None:
    needle = _digest("e1")
    straddling = ReplayMemory("x" * 5 + needle + "y" * (DIGEST_CHARS - 5))
    assert len(straddling.digests) == 2 * DIGEST_CHARS
    assert "e1" not in straddling
    assert "e1" in ReplayMemory("x" * DIGEST_CHARS + needle)


def test_a_lower_limit_forgets_the_oldest_at_the_next_event() -> None:
    memory = ReplayMemory.of(["a", "b", "c", "d"])
    smaller = memory.remember("e", 2)
    assert len(smaller) == 2 and "d" in smaller and "e" in smaller and "c" not in smaller


def test_old_states_ids_become_digests_and_the_new_form_round_trips() -> None:
    old = CustomerState.from_bytes(b'{"s":{"e1":"d-1","e2":"d-2"},"n":2}')
    assert "e1" in old.seen and "e2" in old.seen and len(old.seen) == 2
    raw = old.to_bytes()
    assert b'"s"' not in raw and b"d-1" not in raw
    assert CustomerState.from_bytes(raw) == old


def test_a_full_memory_is_a_fraction_of_the_ids_with_their_decision_ids() -> None:
    ids = [f"sim-{i:08d}" for i in range(200)]
    memory = ReplayMemory.of(ids)
    assert len(memory.digests) == 200 * DIGEST_CHARS
    as_dict = {e: decision_id_for("customer-1", e) for e in ids}
    assert len(CustomerState(seen=memory).to_bytes()) < len(str(as_dict)) / 3


@pytest.mark.parametrize(
    "stored",
    [b'{"r":5}', b'{"r":["abc"]}', b'{"r":"abc"}', b'{"s":5}', b'{"s":[1,2]}'],
)
def test_a_replay_memory_of_the_wrong_shape_is_refused_while_loading(stored: bytes) -> None:
    with pytest.raises((ValueError, TypeError, AttributeError)):
        CustomerState.from_bytes(stored)


def test_only_text_is_ever_inside() -> None:
    assert 1 not in ReplayMemory.of(["1"])


@given(
    ids=st.lists(st.text(min_size=1, max_size=12), max_size=60),
    limit=st.integers(min_value=1, max_value=20),
)
def test_behaves_like_the_last_limit_ids(ids: list[str], limit: int) -> None:
    memory = ReplayMemory()
    for event_id in ids:
        memory = memory.remember(event_id, limit)
    kept = ids[-limit:]
    assert len(memory) == len(kept)
    for event_id in set(ids):
        assert (event_id in memory) == (event_id in kept)
    assert CustomerState.from_bytes(CustomerState(seen=memory).to_bytes()).seen == memory
