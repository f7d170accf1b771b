"""Which records of a polled batch to handle now, and which offsets the transaction
commits. Pure: no broker, no clock of its own.

Wake-ups go into the `WakeupSchedule` as they are read and are released when each is
due, so a short hold is not kept waiting behind a longer one written before it. A wake-up
partition's committed offset stays at the oldest wake-up not yet released: a crash or an
aborted transaction re-reads those, and the ones already released find their hold gone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.processing.batch import InputRecord
from pipeline.processing.wakeup_schedule import WakeupSchedule, wakeup_deadline_s


@dataclass(frozen=True, slots=True)
class Polled:
    """The parts of a consumed message the engine needs."""

    topic: str
    record: InputRecord


@dataclass(slots=True)
class BatchPlan:
    events: list[InputRecord] = field(default_factory=list)
    due_wakeups: list[InputRecord] = field(default_factory=list)
    #: (topic, partition) -> offset to commit
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def plan_batch(
    batch: Sequence[Polled],
    events_topic: str,
    wakeups_topic: str,
    now_s: float,
    schedule: WakeupSchedule,
    wakeups_read: dict[int, int],
    horizon: Callable[[int], float] = lambda partition: math.inf,
) -> BatchPlan:
    """Split a batch: events to decide, wake-ups into `schedule`, those due to release.

    `wakeups_read` (partition -> next wake-up offset to read) is updated in place;
    `horizon(partition)`: the event time its events are decided up to (`pop_due`)."""
    plan = BatchPlan()
    for item in batch:
        rec = item.record
        if item.topic == events_topic:
            plan.events.append(rec)
            key = (events_topic, rec.partition)
            plan.offsets[key] = max(plan.offsets.get(key, 0), rec.offset + 1)
        elif item.topic == wakeups_topic:
            schedule.add(rec, wakeup_deadline_s(rec.value))
            wakeups_read[rec.partition] = max(wakeups_read.get(rec.partition, 0), rec.offset + 1)
    plan.due_wakeups = [w.record for w in schedule.pop_due(now_s, horizon)]
    touched = {r.partition for r in plan.due_wakeups}
    touched |= {i.record.partition for i in batch if i.topic == wakeups_topic}
    for p in touched:
        if p in wakeups_read:
            plan.offsets[(wakeups_topic, p)] = schedule.restart_offset(p, wakeups_read[p])
    return plan
