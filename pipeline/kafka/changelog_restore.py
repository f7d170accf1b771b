"""Bringing local databases up to the end of their changelog partitions, in batches: the
one restore both runtimes use (the transactional runtime on each assignment, the Faust
runtime before Faust's own recovery, which then has only the tail left to read).

Restore reads with read_committed, so the records of aborted transactions never reach a
local database; it starts at each database's checkpoint (or the log's start when the data
dir is new) and stops at the partition's end (`kafka/reader.py`: for a read_committed
reader that lies past trailing transaction markers, and before a transaction still open).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, TopicPartition
from rocksdict import WriteBatch

from pipeline.kafka.reader import RangeReader, scan_consumer
from pipeline.settings import Settings

log = logging.getLogger(__name__)

RESTORE_BATCH = 20_000


class RestorableDB(Protocol):
    """One partition's local database, as the restore needs it."""

    def checkpoint(self) -> int | None:
        """The next changelog offset to read, or None if nothing was ever restored."""

    def apply(self, items: Iterable[tuple[bytes, bytes | None]], next_offset: int | None) -> int:
        """Write (key, value) pairs (None deletes) and the new checkpoint, atomically."""


def changelog_batch(
    items: Iterable[tuple[bytes, bytes | None]], checkpoint: tuple[bytes, bytes] | None
) -> tuple[WriteBatch, int]:
    """One WriteBatch of changelog records (a None value deletes) and, if given, the
    (key, value) of the database's checkpoint; and how many records it holds."""
    batch = WriteBatch(raw_mode=True)
    n = 0
    for key, value in items:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
        n += 1
    if checkpoint is not None:
        batch.put(*checkpoint)
    return batch, n


def restore_consumer(settings: Settings) -> Consumer:
    return scan_consumer(settings, "restore", **{"max.partition.fetch.bytes": 8 * 1024 * 1024})


@dataclass(frozen=True)
class RestoreStats:
    partitions: int
    keys: int
    seconds: float
    #: stopped at its time budget before every partition reached its end
    stopped: bool = False

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0


def restore(
    consumer: Any,
    topic: str,
    dbs: Mapping[int, RestorableDB],
    batch_size: int = RESTORE_BATCH,
    clock: Callable[[], float] = time.perf_counter,
    budget_s: float | None = None,
) -> RestoreStats:
    """Bring every database in `dbs` ({partition: db}) up to the end of its changelog
    partition; each polled batch goes to disk as one WriteBatch with its new checkpoint.
    With `budget_s`, stop after the batch that used it up: every database is then
    consistent up to its own checkpoint, and a later restore reads on from there."""
    started = clock()
    ranges: dict[int, tuple[int, int]] = {}
    for p, db in dbs.items():
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10.0, cached=False
        )
        checkpoint = db.checkpoint()
        ranges[p] = (low if checkpoint is None else max(checkpoint, low), high)
    keys, stopped = 0, False
    reader = RangeReader(consumer, topic, ranges)
    for batch in reader.batches(batch_size):
        items: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for msg in batch:
            partition, key = msg.partition(), msg.key()
            if partition is not None and key is not None:  # a changelog record has both
                items.setdefault(partition, []).append((key, msg.value()))
        for partition, kv in items.items():
            keys += dbs[partition].apply(kv, reader.positions[partition])
        if budget_s is not None and clock() - started > budget_s:
            stopped = True
            break
    for p, (begin, _) in ranges.items():  # reached the end past markers: checkpoint it
        if reader.positions[p] > begin and dbs[p].checkpoint() != reader.positions[p]:
            dbs[p].apply((), reader.positions[p])
    return RestoreStats(len(dbs), keys, clock() - started, stopped)


def restore_partitions(
    settings: Settings,
    topic: str,
    dbs: Mapping[int, RestorableDB],
    consumer_factory: Callable[[Settings], Consumer] = restore_consumer,
    budget_s: float | None = None,
) -> RestoreStats:
    """Restore with a consumer of its own (`consumer_factory(settings)`, a fake in tests),
    and say how fast in the log."""
    consumer = consumer_factory(settings)
    try:
        stats = restore(consumer, topic, dbs, budget_s=budget_s)
    finally:
        consumer.close()
    log.info(
        "restored %d keys into %d partition(s) in %.2fs (%.0f keys/s)%s",
        stats.keys,
        stats.partitions,
        stats.seconds,
        stats.keys_per_s,
        f"; stopped at its budget of {budget_s:g}s, the rest is read on later"
        if stats.stopped
        else "",
    )
    return stats
