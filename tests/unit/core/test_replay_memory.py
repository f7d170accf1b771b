"""The replay memory: fixed-width digests in one string, oldest first, bounded by count."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.arbitration import decide
from pipeline.core.decision import DUPLICATE, decision_id_for
from pipeline.core.policy import Policy
from pipeline.core.state import DIGEST_CHARS, EMPTY_STATE, CustomerState, ReplayMemory, digest_of
from tests.factories import T0, consent, proposal

HOUR = 3_600_000


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
        memory = memory.add(digest_of(event_id), limit)
    assert len(memory) == min(len(added), limit)
    assert all(e in memory for e in inside)
    assert not any(e in memory for e in outside)


def test_a_digest_straddling_two_entries_is_no_match() -> None:
    needle = digest_of("e1")
    straddling = ReplayMemory("x" * 5 + needle + "y" * (DIGEST_CHARS - 5))
    assert len(straddling.digests) == 2 * DIGEST_CHARS
    assert "e1" not in straddling
    assert "e1" in ReplayMemory("x" * DIGEST_CHARS + needle)


def test_a_lower_limit_forgets_the_oldest_at_the_next_event() -> None:
    memory = ReplayMemory.of(["a", "b", "c", "d"])
    smaller = memory.add(digest_of("e"), 2)
    assert len(smaller) == 2 and "d" in smaller and "e" in smaller and "c" not in smaller


def test_old_states_ids_become_digests_and_the_new_form_round_trips() -> None:
    old = CustomerState.from_bytes(b'{"s":{"e1":"d-1","e2":"d-2"},"n":2}')
    assert "e1" in old.seen and "e2" in old.seen and len(old.seen) == 2
    raw = old.to_bytes()
    assert b'"s"' not in raw and b"d-1" not in raw
    assert CustomerState.from_bytes(raw) == old


def test_a_state_written_in_the_old_form_decides_as_the_new_one_does() -> None:
    """An upgrade mid-stream: the state stored before it (ids with their decision ids)
    decides the next events, replays included, exactly as the state the new code kept."""
    policy = Policy(replay_memory=5)
    history = [consent(True, at=T0 - 1)] + [
        proposal(at=T0 + i * 60_000, category="service") for i in range(8)
    ]
    state = EMPTY_STATE
    for event in history:
        state = decide(state, event, policy, event.occurred_at)[1]
    remembered = [e.event_id for e in history[-5:]]
    old_form = orjson.loads(state.to_bytes())
    del old_form["r"]
    old_form["s"] = {e: decision_id_for("c1", e) for e in remembered}
    upgraded = CustomerState.from_bytes(orjson.dumps(old_form))
    assert upgraded == state
    later = [history[-1], history[-5], history[-6], proposal(at=T0 + HOUR, category="service")]
    outcomes = []
    for event in later:
        new_decision, state = decide(state, event, policy, event.occurred_at)
        old_decision, upgraded = decide(upgraded, event, policy, event.occurred_at)
        assert old_decision == new_decision and upgraded == state
        outcomes.append(new_decision.outcome == DUPLICATE)
    assert outcomes == [True, True, False, False]  # history[-6] is beyond the memory of 5


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
        memory = memory.add(digest_of(event_id), limit)
    kept = ids[-limit:]
    assert len(memory) == len(kept)
    for event_id in set(ids):
        assert (event_id in memory) == (event_id in kept)
    assert CustomerState.from_bytes(CustomerState(seen=memory).to_bytes()).seen == memory
