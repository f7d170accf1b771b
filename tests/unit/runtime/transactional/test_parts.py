"""The transactional runtime's broker-free parts: batch planning around wake-ups and the overlay
store a transaction decides against."""

from __future__ import annotations

import orjson

from pipeline.processing.batch import InputRecord
from pipeline.processing.wakeup_schedule import WakeupSchedule, wakeup_deadline_s
from pipeline.runtime.transactional.state_store import LocalStores, OverlayStore
from pipeline.runtime.transactional.wakeups import Polled, plan_batch

EV, WK = "events", "wakeups"


def rec(topic: str, partition: int, offset: int, deadline_ms: int | None = None) -> Polled:
    value = b"{}" if deadline_ms is None else orjson.dumps({"deadline": deadline_ms})
    return Polled(topic, InputRecord(b"k", value, partition, offset, None))


def plan(batch, now_s, schedule=None, read=None):
    schedule = WakeupSchedule() if schedule is None else schedule
    return plan_batch(batch, EV, WK, now_s, schedule, {} if read is None else read)


def test_due_wakeups_run_and_a_pending_one_holds_back_only_its_offset():
    batch = [
        rec(EV, 0, 7),
        rec(WK, 1, 3, deadline_ms=1_000),  # due
        rec(WK, 1, 4, deadline_ms=9_000),  # not due: waits in the schedule
        rec(WK, 1, 5, deadline_ms=1_000),  # behind the waiting one, due: released now
        rec(WK, 2, 10, deadline_ms=2_000),  # another partition
        rec(EV, 0, 8),
    ]
    p = plan(batch, now_s=5.0)
    assert [r.offset for r in p.events] == [7, 8]
    assert [(r.partition, r.offset) for r in p.due_wakeups] == [(1, 3), (1, 5), (2, 10)]
    # the committed offset stops at the waiting wake-up: a crash while waiting loses nothing
    assert p.offsets == {(EV, 0): 9, (WK, 1): 4, (WK, 2): 11}


def test_a_waiting_wakeup_is_released_at_its_deadline_and_the_offset_moves_on():
    schedule, read = WakeupSchedule(), {}
    plan([rec(WK, 1, 4, deadline_ms=9_000)], now_s=5.0, schedule=schedule, read=read)
    assert schedule.next_deadline() == 9.0
    assert not plan([], now_s=8.9, schedule=schedule, read=read).due_wakeups
    later = plan([], now_s=9.0, schedule=schedule, read=read)
    assert [r.offset for r in later.due_wakeups] == [4]
    assert later.offsets == {(WK, 1): 5}


def test_an_unreadable_wakeup_is_due_at_once():
    assert wakeup_deadline_s(b"not json") == 0.0
    p = plan([Polled(WK, InputRecord(b"k", b"?", 0, 1, None))], now_s=1.0)
    assert len(p.due_wakeups) == 1


def test_overlay_reads_its_own_writes_and_reaches_disk_only_on_commit(tmp_path):
    stores = LocalStores(tmp_path)
    stores.open(0).apply([(b"a", b"old")], 5)
    overlay = OverlayStore(stores)
    overlay.save(0, b"a", b"new")
    assert overlay.load(0, b"a") == b"new" and stores.load(0, b"a") == b"old"
    OverlayStore(stores).commit_to({})  # another (aborted) transaction: nothing written
    overlay.commit_to({0: 9})
    assert stores.load(0, b"a") == b"new" and stores.dbs[0].checkpoint() == 9
    stores.close_all()
