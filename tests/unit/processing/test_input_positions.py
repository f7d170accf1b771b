"""The sequence guard: every record of a partition decided once, in offset order, whatever
the consumer delivers (re-deliveries, holes, stale fetches, transaction markers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.processing.input_positions import (
    Admission,
    InputPositions,
    pack_position,
    position_key,
    unpack_position,
)

TP = ("agent-events", 3)
D, S, X = Admission.DECIDE, Admission.SKIP, Admission.DISCARD


def guard_at(offset: int) -> InputPositions:
    g = InputPositions(reseek_after_s=5.0)
    g.load(TP, offset)
    return g


@pytest.mark.parametrize(
    "start, deliveries, verdicts",
    [
        pytest.param(10, [10, 11, 12], [D, D, D], id="in sequence"),
        pytest.param(10, [7, 8, 9, 10], [S, S, S, D], id="re-delivered after a restart"),
        pytest.param(10, [12, 13], [X, X], id="a hole: not decided until the seek"),
    ],
)
def test_verdicts(start, deliveries, verdicts):
    g = guard_at(start)
    assert [g.classify(TP, o) for o in deliveries] == verdicts


def test_a_hole_asks_for_one_seek_back_then_asks_the_broker_if_nothing_comes():
    g = guard_at(10)
    assert g.classify(TP, 14, now=0.0) is X
    assert g.seeks_due(now=0.0) == [(TP, 10)]
    assert g.seeks_due(now=0.5) == [] and g.probes_due(now=0.5) == []
    assert g.probes_due(now=5.0) == [(TP, 10)]  # nothing at all came back
    g.probed(TP, first_record=10, end=20)  # record 10 exists: fetch it again
    assert g.seeks_due(now=5.0) == [(TP, 10)] and g.attempts(TP) == 2
    assert g.classify(TP, 10) is D and g.seeks_due(now=20.0) == []


def test_the_position_moves_over_markers_only_on_the_brokers_word():
    """Offsets 10..11 hold transaction markers: records past them are never decided on
    the consumer's word alone, however often the fetch begins at 12."""
    g = guard_at(10)
    assert g.classify(TP, 12, now=0.0) is X
    g.seeks_due(now=0.0)
    assert [g.classify(TP, o, now=0.2) for o in (12, 13)] == [X, X]
    assert g.probes_due(now=0.5) == []
    assert g.probes_due(now=1.0) == [(TP, 10)]  # records past it keep coming
    g.probed(TP, first_record=12, end=20)
    assert g.next_offset(TP) == 12 and g.seeks_due(now=1.0) == [(TP, 12)]
    assert [g.classify(TP, o) for o in (12, 13)] == [D, D]


def test_an_idle_partition_whose_log_reaches_past_the_position_is_probed():
    g = guard_at(10)
    g.check_idle(TP, highwater=20, now=1.0)
    assert g.probes_due(now=1.0) == []  # deliveries may still be on their way
    g.check_idle(TP, highwater=20, now=6.0)
    assert g.probes_due(now=6.0) == [(TP, 10)]
    g.probed(TP, first_record=None, end=20)  # only markers up to the end
    assert g.next_offset(TP) == 20 and g.probes_due(now=30.0) == []
    g.check_idle(TP, highwater=20, now=60.0)
    assert g.probes_due(now=60.0) == []


def test_a_partition_first_delivered_elsewhere_seeks_to_the_stored_position():
    g = InputPositions()
    g.load(TP, 500, delivered=420)  # Faust started at the group's (older) offset
    assert g.seeks_due(now=0.0) == [(TP, 500)]
    assert g.classify(TP, 420) is S  # what was already fetched is skipped meanwhile
    g.load(TP, 500, delivered=500)
    assert g.seeks_due(now=1.0) == []


def test_forget_drops_position_and_pending_seek():
    g = guard_at(10)
    g.classify(TP, 12)
    g.forget([TP])
    assert not g.known(TP) and g.seeks_due(now=0.0) == []


def test_position_values_round_trip():
    assert unpack_position(pack_position(123_456_789)) == 123_456_789
    assert unpack_position(None) is None
    assert position_key("agent-events").startswith(b"\x00")  # never a customer id


# --- a consumer that misbehaves in every way the Faust runtime has shown ----------------

fault_st = st.tuples(
    st.integers(0, 150),  # at which step
    st.sampled_from(["drop", "reorder", "rewind"]),
    st.integers(1, 6),  # how many records
)


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(st.integers(1, 3), min_size=1, max_size=40),
    faults=st.lists(fault_st, max_size=8),
    fetch=st.integers(1, 6),
)
def test_every_record_is_decided_exactly_once_in_order(steps, faults, fetch):
    """The log has holes (markers). The consumer drops fetched records (a queue cleared),
    delivers records of a fetch out of order, and rewinds to older offsets, anywhere, also
    right after the guard's own seeks. Records in flight still arrive after a seek. The
    broker's answer to a probe is the truth: the first record at or after an offset."""
    log = []
    offset = 0
    for step in steps:
        offset += step  # a step of 2 or 3: markers in between
        log.append(offset)

    def first_at_or_after(target: int) -> int:
        return next((i for i, o in enumerate(log) if o >= target), len(log))

    g = InputPositions(probe_after_s=0.5, reseek_after_s=1.0, idle_after_s=2.0)
    g.load(TP, 0)
    position = 0  # index into log of the next record to fetch
    in_flight: list[int] = []
    decided: list[int] = []
    for step in range(5000):
        now = step * 0.1
        if not in_flight and position < len(log):
            in_flight = log[position : position + fetch]
            position += len(in_flight)
        for at, kind, n in faults:
            if at == step:
                if kind == "drop":
                    del in_flight[:n]
                elif kind == "reorder":
                    in_flight = in_flight[n:] + in_flight[:n]
                else:
                    position = max(0, position - n)
        if in_flight and g.classify(TP, in_flight.pop(0), now) is Admission.DECIDE:
            decided.append(g.next_offset(TP) - 1)
        g.check_idle(TP, log[-1] + 1, now)
        for _, target in g.probes_due(now):
            i = first_at_or_after(target)
            g.probed(TP, log[i] if i < len(log) else None, log[-1] + 1)
        for _, target in g.seeks_due(now):
            position = first_at_or_after(target)
        if len(decided) == len(log) and not in_flight:
            break
    assert decided == log
