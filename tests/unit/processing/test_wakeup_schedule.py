"""Holds released at their own deadlines, and where a restart resumes reading wake-ups."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pipeline.processing.batch import InputRecord
from pipeline.processing.wakeup_schedule import WakeupSchedule, wakeup_deadline_s


def wakeup(partition: int, offset: int) -> InputRecord:
    return InputRecord(b"c", b"{}", partition, offset, None)


def test_a_short_hold_is_not_kept_behind_a_long_one_written_before_it():
    s = WakeupSchedule()
    s.add(wakeup(0, 5), deadline_s=10.0)  # 10 s hold
    s.add(wakeup(0, 6), deadline_s=1.0)  # 1 s hold, later in the topic
    assert s.next_deadline() == 1.0
    assert [w.record.offset for w in s.pop_due(1.0)] == [6]
    assert s.restart_offset(0, next_to_read=7) == 5  # offset 5 still pending
    assert [w.record.offset for w in s.pop_due(10.0)] == [5]
    assert s.restart_offset(0, next_to_read=7) == 7 and len(s) == 0


def test_drop_forgets_revoked_partitions_only():
    s = WakeupSchedule()
    s.add(wakeup(0, 1), 5.0)
    s.add(wakeup(1, 1), 5.0)
    s.drop([1])
    assert [w.record.partition for w in s.pop_due(5.0)] == [0]
    assert s.restart_offset(1, next_to_read=2) == 2


def test_an_unreadable_wakeup_is_due_at_once():
    assert wakeup_deadline_s(b"not json") == 0.0
    assert wakeup_deadline_s(b'{"deadline": 1500}') == 1.5


@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 100)), max_size=40), st.floats(0, 100))
def test_released_in_deadline_order_and_restart_never_skips_a_pending_one(items, now):
    s = WakeupSchedule()
    for offset, (partition, deadline) in enumerate(items):
        s.add(wakeup(partition, offset), deadline)
    due = s.pop_due(now)
    assert [w.deadline_s for w in due] == sorted(d for _, d in items if d <= now)
    for partition in range(3):
        pending = [o for o, (p, d) in enumerate(items) if p == partition and d > now]
        assert s.restart_offset(partition, len(items)) == min(pending, default=len(items))


def test_while_a_backlog_is_worked_off_a_hold_closes_with_its_partitions_event_time():
    s = WakeupSchedule()
    s.add(wakeup(0, 1), deadline_s=10.0)
    s.add(wakeup(0, 2), deadline_s=20.0)
    s.add(wakeup(1, 1), deadline_s=10.0)
    event_time = {0: 15.0}  # partition 0 decided up to event time 15; partition 1 caught up
    got = s.pop_due(100.0, horizon=lambda p: event_time.get(p, math.inf))
    assert sorted((w.record.partition, w.record.offset) for w in got) == [(0, 1), (1, 1)]
    assert s.next_check(100.0) == 100.05  # look again soon
    event_time[0] = 20.0
    assert [w.record.offset for w in s.pop_due(100.1, lambda p: event_time[p])] == [2]
