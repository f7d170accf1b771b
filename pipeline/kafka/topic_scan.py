"""Read a whole topic once, from the beginning to the end offsets it had when the scan began.

For the audit tools: records produced while scanning are not waited for, so a scan always
ends. Partitions are assigned directly (no consumer group, nothing committed), which leaves
the tower's own consumer groups untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

#: called with (records read, records to read) every `progress_every` records and at the end
Progress = Callable[[int, int], None]


class ScanError(Exception):
    """The topic cannot be read (missing, broker unreachable); the message says which."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def scan_topic(
    bootstrap: str,
    topic: str,
    *,
    keep: Callable[[bytes | None, bytes | None], bool] | None = None,
    progress: Progress | None = None,
    progress_every: int = 50_000,
    timeout_s: float = 30.0,
) -> Iterator[TopicRecord]:
    """Yield the records of every partition in offset order (partitions one after another).

    `keep(key, value)` filters before anything is decoded, which keeps long scans cheap.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tower-audit-scan",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
        }
    )
    try:
        ranges = _ranges(consumer, bootstrap, topic, timeout_s)
        total = sum(high - low for _, low, high in ranges)
        read = 0
        for partition, low, high in ranges:
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            next_offset = low
            deadline = time.monotonic() + timeout_s
            while next_offset < high:
                batch = consumer.consume(1000, 1.0)
                if not batch and _position(consumer, topic, partition) >= high:
                    break  # the rest were control records (transaction markers) or compacted
                if not batch and time.monotonic() > deadline:
                    raise ScanError(
                        f"{topic} partition {partition} stopped at offset {next_offset} of "
                        f"{high} for {timeout_s:g} s; is the broker on {bootstrap} still up?"
                    )
                for msg in batch:
                    if msg.error():
                        raise ScanError(f"reading {topic}: {msg.error()}")
                    if msg.offset() >= high:
                        next_offset = high
                        break
                    next_offset = msg.offset() + 1
                    read += 1
                    if progress is not None and read % progress_every == 0:
                        progress(read, total)
                    key, value = msg.key(), msg.value()
                    if keep is None or keep(key, value):
                        yield TopicRecord(topic, partition, msg.offset(), key, value)
                if batch:
                    deadline = time.monotonic() + timeout_s
        if progress is not None and total >= progress_every:
            progress(total, total)
    finally:
        consumer.close()


def _position(consumer: Consumer, topic: str, partition: int) -> int:
    return consumer.position([TopicPartition(topic, partition)])[0].offset


def _ranges(
    consumer: Consumer, bootstrap: str, topic: str, timeout_s: float
) -> list[tuple[int, int, int]]:
    """(partition, first offset, end offset) for each partition, taken now."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise ScanError(
            f"cannot reach Kafka on {bootstrap} ({exc.args[0]}); start it with "
            "`tower kafka up` or pass --bootstrap"
        ) from None
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise ScanError(
            f"topic {topic!r} does not exist on {bootstrap}; create the topics with "
            "`tower topics create`, or check TOWER_TOPIC_* and --bootstrap"
        )
    out = []
    for partition in sorted(info.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        out.append((partition, low, high))
    return out
