"""The Faust side of the sequence guard (`InputPositions`): the worker owns its input
offsets (docs/faust-offsets.md), so it loads them from the state table, seeks over holes and
mirrors the stored ones to the consumer group for lag monitors."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust

from pipeline.kafka.reader import ScanError, first_record_at
from pipeline.processing.batch import BatchProcessor, InputRecord, StateWrite
from pipeline.processing.input_positions import (
    Admission,
    InputPositions,
    TopicPartition,
    pack_position,
    position_key,
    unpack_position,
)
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime.faust import compat as faust_compat
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class InputGuard:
    """The Faust side of `InputPositions`: loads positions from the table, issues seeks,
    and mirrors stored positions to the consumer group."""

    def __init__(
        self, app: faust.App, table: Any, metrics: TowerMetrics, settings: Settings
    ) -> None:
        self.app, self.table, self.metrics, self.settings = app, table, metrics, settings
        self.positions = InputPositions()
        #: positions written to the table since the last mirror
        self.stored: dict[TopicPartition, int] = {}

    async def admit(self, batch: Sequence[Any]) -> list[InputRecord]:
        """The records of the batch's messages that are next in sequence."""
        assigned = self.app.consumer.assignment()
        now = time.monotonic()
        admitted = []
        for msg in batch:
            if msg.tp not in assigned:  # left over from before a rebalance: not ours now
                self.metrics.input_not_decided.labels("not_assigned").inc()
                continue
            tp = (msg.topic, msg.partition)
            if not self.positions.known(tp):
                await self._load(msg)
            admission = self.positions.classify(tp, msg.offset, now)
            if admission is Admission.DECIDE:
                admitted.append(input_record(msg))
            else:
                self.metrics.input_not_decided.labels(admission.value).inc()
        return admitted

    async def _load(self, msg: Any) -> None:
        """The stored position; if none, the partition's first offset (nothing of it was
        ever decided, so deciding starts at its beginning, wherever Faust started). Faust
        seeks a new assignment to the group's offset, which the mirror keeps at or below
        the stored one; where the first record delivered is not at it, the guard seeks."""
        faust_compat.focus(msg.topic, msg.partition)
        stored = unpack_position(self.table.get(position_key(msg.topic)))
        if stored is None:
            stored = (await self.app.consumer.earliest_offsets(msg.tp))[msg.tp]
        self.positions.load((msg.topic, msg.partition), stored, time.monotonic(), msg.offset)

    def position_writes(self, next_offsets: dict[TopicPartition, int]) -> list[StateWrite]:
        return [
            StateWrite(p, position_key(topic), pack_position(offset))
            for (topic, p), offset in next_offsets.items()
        ]

    def written(self, next_offsets: dict[TopicPartition, int]) -> None:
        self.stored.update(next_offsets)

    def horizon(self, topic: str, processor: BatchProcessor) -> Callable[[int], float]:
        """For `WakeupSchedule.pop_due` (which asks only of partitions with pending
        wake-ups, so owned ones): infinite for a partition of `topic` decided up to its
        log end (as far as fetched), else the event time its input has reached."""
        consumer = self.app.consumer

        def until(partition: int) -> float:
            end = consumer.highwater(faust.types.TP(topic, partition))
            position = self.positions.next_offset((topic, partition))
            if position is None and end is not None:  # none delivered since the assignment
                faust_compat.focus(topic, partition)
                position = unpack_position(self.table.get(position_key(topic))) or 0
            if end is not None and position is not None and position >= end:
                return math.inf
            return processor.event_time.get(partition, -1) / 1000

        return until

    def position(self, tp: Any) -> int | None:
        """The next offset to decide of an assigned partition: the sequence guard's, else
        (nothing delivered since the assignment) the stored one."""
        position = self.positions.next_offset((tp.topic, tp.partition))
        if position is None:
            faust_compat.focus(tp.topic, tp.partition)
            position = unpack_position(self.table.get(position_key(tp.topic)))
        return position

    def check_idle(self) -> None:
        consumer, now = self.app.consumer, time.monotonic()
        for tp in consumer.assignment():
            self.positions.check_idle((tp.topic, tp.partition), consumer.highwater(tp), now)

    async def probe_holes(self) -> None:
        """Partitions whose seek did not bring the missing record: ask the broker."""
        for (topic, partition), offset in self.positions.probes_due(time.monotonic()):
            try:
                first, end = await asyncio.to_thread(
                    first_record_at, self.settings, topic, partition, offset
                )
            except ScanError as exc:  # the brokers are down: the probe stays due
                log.warning("%s/%d: asking the broker failed, retrying: %s", topic, partition, exc)
                continue
            log.warning(
                "%s/%d: offset %d not delivered after a seek; the broker's first record "
                "at or after it: %s (log end %d)",
                topic,
                partition,
                offset,
                first,
                end,
            )
            self.positions.probed((topic, partition), first, end)

    async def seek_holes(self) -> None:
        for (topic, partition), offset in self.positions.seeks_due(time.monotonic()):
            attempts = self.positions.attempts((topic, partition))
            level = logging.WARNING if attempts > 1 else logging.INFO
            log.log(
                level,
                "%s/%d: records missing before the next delivered one; seeking "
                "back to %d (attempt %d)",
                topic,
                partition,
                offset,
                attempts,
            )
            self.metrics.input_seeks.inc()
            try:
                await faust_compat.seek(self.app.consumer, faust.types.TP(topic, partition), offset)
            except Exception as exc:  # e.g. revoked meanwhile; retried if still needed
                log.warning("seek %s/%d to %d failed: %r", topic, partition, offset, exc)

    async def mirror(self) -> None:
        """Commit the stored positions to the group, once the changelog writes holding
        them are on the broker (so the group never runs ahead of the table)."""
        if not self.stored:
            return
        offsets, self.stored = self.stored, {}
        await self.app.producer.flush()
        assignment = self.app.consumer.assignment()
        owned = {tp: o for tp, o in offsets.items() if faust.types.TP(*tp) in assignment}
        if owned:
            try:
                await faust_compat.commit(self.app.consumer, owned)
            except Exception as exc:  # a rebalance in progress: the next mirror catches up
                log.info("mirroring input positions to the group failed: %r", exc)

    def forget(self, tps: Iterable[Any]) -> None:
        self.positions.forget(tps)
        for tp in tps:
            self.stored.pop((tp.topic, tp.partition), None)


def input_record(msg: Any) -> InputRecord:
    ts = msg.timestamp
    return InputRecord(
        msg.key, msg.value, msg.partition, msg.offset, int(ts * 1000) if ts else None, msg.headers
    )
