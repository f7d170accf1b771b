"""Wake-ups read but not yet released, ordered by deadline, shared by both runtimes.

Every due hold is released when it is due, whatever its place in the topic: a 1 s hold is
not kept waiting behind a 10 s hold written before it. The topic position a restart must
resume from is the oldest wake-up still pending (or the next one to read), so a crash
re-reads what was not released yet; wake-ups already released find their hold gone.
Pure: the caller passes the time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.shell.batch import InputRecord


def wakeup_deadline_s(value: bytes | None) -> float:
    """The wall-clock second a wake-up is due (its deadline, event time); 0 if unreadable,
    so a malformed wake-up is dead-lettered at once instead of waiting."""
    try:
        return float(orjson.loads(value or b"")["deadline"]) / 1000
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0


@dataclass(order=True, slots=True)
class PendingWakeup:
    deadline_s: float
    seq: int
    record: InputRecord = field(compare=False)
    #: what the runtime needs to act on it (the Faust event, for the table's context)
    handle: Any = field(default=None, compare=False)


class WakeupSchedule:
    def __init__(self) -> None:
        self._heap: list[PendingWakeup] = []
        self._seq = itertools.count()
        #: partition -> offsets pending there
        self._pending: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, record: InputRecord, deadline_s: float, handle: Any = None) -> None:
        heapq.heappush(self._heap, PendingWakeup(deadline_s, next(self._seq), record, handle))
        self._pending.setdefault(record.partition, set()).add(record.offset)

    def next_deadline(self) -> float | None:
        return self._heap[0].deadline_s if self._heap else None

    def pop_due(self, now_s: float) -> list[PendingWakeup]:
        """Every wake-up due at `now_s`, earliest deadline first."""
        due = []
        while self._heap and self._heap[0].deadline_s <= now_s:
            item = heapq.heappop(self._heap)
            self._pending[item.record.partition].discard(item.record.offset)
            due.append(item)
        return due

    def restart_offset(self, partition: int, next_to_read: int) -> int:
        """The offset a restart resumes from: the oldest wake-up still pending, if any."""
        pending = self._pending.get(partition)
        return min(pending) if pending else next_to_read

    def drop(self, partitions: Iterable[int]) -> None:
        """Partitions revoked or rewound: their wake-ups will be read again."""
        gone = set(partitions)
        if gone & self._pending.keys():
            self._heap = [w for w in self._heap if w.record.partition not in gone]
            heapq.heapify(self._heap)
            for p in gone:
                self._pending.pop(p, None)
