"""Which records of a polled batch to handle now, and where a not-yet-due wake-up stops
its partition. Pure: no broker, no clock of its own.

A wake-up that is not due pauses its partition at its own offset (the shell seeks back
there and resumes at the deadline). Offsets of a partition are only committed up to the
records handled, so a crash while waiting loses no wake-up, and no heap has to survive.
Wake-ups behind a waiting one wait too: they were written in decision order and their
deadlines are close, which is what the Faust engine's sequential agent does as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from pipeline.shell.batch import InputRecord


@dataclass(frozen=True, slots=True)
class Polled:
    """The parts of a consumed message the engine needs."""

    topic: str
    record: InputRecord


@dataclass(slots=True)
class BatchPlan:
    events: list[InputRecord] = field(default_factory=list)
    due_wakeups: list[InputRecord] = field(default_factory=list)
    #: wake-up partition -> (offset to resume from, deadline in wall-clock seconds)
    hold_back: dict[int, tuple[int, float]] = field(default_factory=dict)
    #: (topic, partition) -> next offset to commit (last handled + 1)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def wakeup_deadline_s(value: bytes | None) -> float:
    """The wall-clock second a wake-up is due (its deadline, event time); 0 if unreadable,
    so a malformed wake-up is dead-lettered at once instead of stalling its partition."""
    try:
        return float(orjson.loads(value or b"")["deadline"]) / 1000
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0


def plan_batch(
    batch: Sequence[Polled],
    events_topic: str,
    wakeups_topic: str,
    now_s: float,
    paused: frozenset[int] | set[int] = frozenset(),
) -> BatchPlan:
    """Split a batch; `paused` are wake-up partitions already waiting (their records are
    stale prefetches and will be fetched again after the resume)."""
    plan = BatchPlan()
    for item in batch:
        rec = item.record
        if item.topic == events_topic:
            plan.events.append(rec)
        elif item.topic == wakeups_topic:
            p = rec.partition
            if p in paused or p in plan.hold_back:
                continue
            deadline = wakeup_deadline_s(rec.value)
            if deadline > now_s:
                plan.hold_back[p] = (rec.offset, deadline)
                continue
            plan.due_wakeups.append(rec)
        else:
            continue
        key = (item.topic, rec.partition)
        plan.offsets[key] = max(plan.offsets.get(key, 0), rec.offset + 1)
    return plan
