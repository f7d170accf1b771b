"""The state changelog: its topic (shared with the Faust engine) and the restore of local
databases from it on partition assignment.

Restore reads with read_committed, so the records of aborted transactions never reach a
local database; it starts at each database's checkpoint (or the log's start when the data
dir is new) and stops at the partition's end (librdkafka's partition EOF, which for a
read_committed reader lies past trailing transaction markers).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from pipeline.kafka.topics import admin_client
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
    admin = admin_client(settings.bootstrap)
    topics = admin.list_topics(timeout=timeout).topics
    if name in topics and topics[name].error is None:
        have = len(topics[name].partitions)
        if have != settings.partitions:
            raise RuntimeError(
                f"changelog {name} has {have} partitions, expected {settings.partitions}"
            )
        return name
    spec = NewTopic(name, settings.partitions, -1, config={"cleanup.policy": "compact"})
    for fut in admin.create_topics([spec], operation_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return name


def restore_consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # required by the client, never joined: assign() only, nothing committed
            "group.id": f"tower-restore-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
    )


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
    starts: dict[int, int] = {}
    for p, db in dbs.items():
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10.0, cached=False
        )
        checkpoint = db.checkpoint()
        begin = low if checkpoint is None else max(checkpoint, low)
        if begin < high:
            starts[p] = begin
    keys = 0
    if starts:
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        pending = set(starts)
        while pending:
            items: dict[int, list[tuple[bytes, bytes | None]]] = {}
            next_offsets: dict[int, int] = {}
            for msg in consumer.consume(batch_size, 1.0):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    pending.discard(p)
                    next_offsets[p] = max(next_offsets.get(p, 0), msg.offset())
                    continue
                items.setdefault(p, []).append((msg.key(), msg.value()))
                next_offsets[p] = msg.offset() + 1
            for p, offset in next_offsets.items():
                keys += dbs[p].apply(items.get(p, ()), offset)
        consumer.unassign()
    return RestoreStats(len(dbs), keys, clock() - started)


def restore_partitions(bootstrap: str, topic: str, dbs: Mapping[int, PartitionDB]) -> RestoreStats:
    """Restore with a consumer of its own, and say how fast in the log."""
    consumer = restore_consumer(bootstrap)
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
