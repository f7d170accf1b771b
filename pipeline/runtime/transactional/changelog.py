"""The state changelog: its topic (shared with the Faust engine) and the restore of local
databases from it on partition assignment.

Restore reads with read_committed, so the records of aborted transactions never reach a
local database; it starts at each database's checkpoint (or the log's start when the data
dir is new) and stops at the partition's end (`kafka/reader.py`: for a read_committed
reader that lies past trailing transaction markers, and before a transaction still open).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from pipeline.kafka import clients
from pipeline.kafka.reader import RangeReader, scan_consumer
from pipeline.runtime.transactional.state_store import PartitionDB
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: The Faust engine's table name: the same changelog serves both engines.
STATE_TABLE = "customer-state"
RESTORE_BATCH = 20_000


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-{STATE_TABLE}-changelog"


def ensure_changelog_topic(settings: Settings, timeout: float = 30.0) -> str:
    """Create the compacted changelog if missing (Faust creates it the same way)."""
    name = changelog_topic(settings.app_id)
    admin = clients.admin(settings)
    topics = admin.list_topics(timeout=timeout).topics
    if name in topics and topics[name].error is None:
        have = len(topics[name].partitions)
        if have != settings.partitions:
            raise RuntimeError(
                f"changelog {name} has {have} partitions, expected {settings.partitions}"
            )
        return name
    spec = NewTopic(
        name, settings.partitions, settings.replication_factor, config={"cleanup.policy": "compact"}
    )
    for fut in admin.create_topics([spec], operation_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return name


def restore_consumer(settings: Settings) -> Consumer:
    return scan_consumer(settings, "restore", **{"max.partition.fetch.bytes": 8 * 1024 * 1024})


@dataclass(frozen=True)
class RestoreStats:
    partitions: int
    keys: int
    seconds: float

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0


def restore(
    consumer: Any,
    topic: str,
    dbs: Mapping[int, PartitionDB],
    batch_size: int = RESTORE_BATCH,
    clock: Callable[[], float] = time.perf_counter,
) -> RestoreStats:
    """Bring every database in `dbs` ({partition: db}) up to the end of its changelog
    partition; each polled batch goes to disk as one WriteBatch with its new checkpoint."""
    started = clock()
    ranges: dict[int, tuple[int, int]] = {}
    for p, db in dbs.items():
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10.0, cached=False
        )
        checkpoint = db.checkpoint()
        ranges[p] = (low if checkpoint is None else max(checkpoint, low), high)
    keys = 0
    reader = RangeReader(consumer, topic, ranges)
    for batch in reader.batches(batch_size):
        items: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for msg in batch:
            partition, key = msg.partition(), msg.key()
            if partition is not None and key is not None:  # a changelog record has both
                items.setdefault(partition, []).append((key, msg.value()))
        for partition, kv in items.items():
            keys += dbs[partition].apply(kv, reader.positions[partition])
    for p, (begin, _) in ranges.items():  # reached the end past markers: checkpoint it
        if reader.positions[p] > begin and dbs[p].checkpoint() != reader.positions[p]:
            dbs[p].apply((), reader.positions[p])
    return RestoreStats(len(dbs), keys, clock() - started)


def restore_partitions(
    settings: Settings,
    topic: str,
    dbs: Mapping[int, PartitionDB],
    consumer_factory: Callable[[Settings], Consumer] = restore_consumer,
) -> RestoreStats:
    """Restore with a consumer of its own (`consumer_factory(settings)`, a fake in tests),
    and say how fast in the log."""
    consumer = consumer_factory(settings)
    try:
        stats = restore(consumer, topic, dbs)
    finally:
        consumer.close()
    log.info(
        "restored %d keys into %d partition(s) in %.2fs (%.0f keys/s)",
        stats.keys,
        stats.partitions,
        stats.seconds,
        stats.keys_per_s,
    )
    return stats
