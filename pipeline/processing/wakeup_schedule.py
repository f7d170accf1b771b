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
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from pipeline.processing.batch import InputRecord


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


class WakeupSchedule:
    def __init__(self) -> None:
        self._seq = itertools.count()
        #: partition -> its pending wake-ups, a heap by deadline
        self._heaps: dict[int, list[PendingWakeup]] = {}
        #: partition -> offsets pending there
        self._pending: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())

    def add(self, record: InputRecord, deadline_s: float) -> None:
        item = PendingWakeup(deadline_s, next(self._seq), record)
        heapq.heappush(self._heaps.setdefault(record.partition, []), item)
        self._pending.setdefault(record.partition, set()).add(record.offset)

    def next_deadline(self) -> float | None:
        return min((h[0].deadline_s for h in self._heaps.values() if h), default=None)

    def next_check(self, now_s: float, recheck_s: float = 0.05) -> float | None:
        """When to look again: the next deadline, or soon if due ones are deferred."""
        deadline = self.next_deadline()
        if deadline is None:
            return None
        return max(deadline, now_s + recheck_s) if deadline <= now_s else deadline

    def pop_due(
        self, now_s: float, horizon: Callable[[int], float] = lambda partition: math.inf
    ) -> list[PendingWakeup]:
        """Every wake-up due by `now_s` and by `horizon(partition)`, earliest first.

        A hold's deadline is event time. `horizon(partition)`: the event time up to which
        the partition's input is decided (infinite when it is decided to the log end).
        While a backlog is being worked off, a customer's earlier event may still belong
        in a hold whose wall-clock deadline has passed, so the hold closes when the
        partition's event time passes its deadline, as replays and the what-if close it."""
        due: list[PendingWakeup] = []
        for p, heap in self._heaps.items():
            if not heap or heap[0].deadline_s > now_s:
                continue
            until = min(now_s, horizon(p))
            while heap and heap[0].deadline_s <= until:
                item = heapq.heappop(heap)
                self._pending[p].discard(item.record.offset)
                due.append(item)
        due.sort()
        return due

    def restart_offset(self, partition: int, next_to_read: int) -> int:
        """The offset a restart resumes from: the oldest wake-up still pending, if any."""
        pending = self._pending.get(partition)
        return min(pending) if pending else next_to_read

    def drop(self, partitions: Iterable[int]) -> None:
        """Partitions revoked or rewound: their wake-ups will be read again."""
        for p in set(partitions):
            self._heaps.pop(p, None)
            self._pending.pop(p, None)
