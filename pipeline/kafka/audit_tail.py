"""The newest records of one partition, for a customer's timeline.

A customer's records all live in one partition: murmur2 of the key, as Java clients, Faust
(aiokafka) and confluent-kafka with `partitioner=murmur2_random` compute it; the worker
writes audit records to its input's partition. So a timeline reads one partition's tail,
not the topic. Assigned directly: no consumer group, nothing committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.kafka.topic_scan import ScanError, TopicRecord


def key_partition(key: bytes, partitions: int) -> int:
    """The Java default partitioner: positive murmur2 of the key modulo the partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def read_tail(
    bootstrap: str,
    topic: str,
    partition: int,
    last: int,
    keep: Callable[[bytes | None], bool],
    timeout_s: float = 10.0,
) -> list[TopicRecord]:
    """Records among the partition's newest `last` offsets whose key `keep` accepts."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tower-web-timeline",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
        }
    )
    try:
        tp = TopicPartition(topic, partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        except KafkaException as exc:
            raise ScanError(f"cannot read {topic} partition {partition}: {exc.args[0]}") from None
        start = max(low, high - last)
        out: list[TopicRecord] = []
        if high <= start:
            return out
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while True:
            batch = consumer.consume(1000, 0.5)
            for msg in batch:
                if msg.error():
                    raise ScanError(f"reading {topic}: {msg.error()}")
                if msg.offset() < high and keep(msg.key()):
                    out.append(TopicRecord(topic, partition, msg.offset(), msg.key(), msg.value()))
            if batch and batch[-1].offset() >= high - 1:
                return out
            if not batch and consumer.position([tp])[0].offset >= high:
                return out  # the rest were transaction markers or compacted away
            if time.monotonic() > deadline:
                raise ScanError(f"{topic} partition {partition} not read in {timeout_s:g} s")
    finally:
        consumer.close()
