"""Plain confluent-kafka producing and consuming for integration tests."""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipeline.contracts.codec import decode_record
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.kafka import clients
from pipeline.settings import Settings


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]


def _connect(target: str | Settings) -> dict[str, Any]:
    """A bootstrap string, or settings whose security settings the client must use."""
    if isinstance(target, Settings):
        return clients.connection(target)
    return {"bootstrap.servers": target}


def produce(target: str | Settings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = Producer(
        {
            **_connect(target),
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,  # a retry must not reorder a customer's records
            **JAVA_PARTITIONER,
        }
    )
    n = 0
    for key, value in records:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0, "records still unsent after 30 s"
    return n


SCHEMA_FOR = {"approved": "approved_action", "audit": "audit_record", "deadletter": "dead_letter"}


def consume_until(
    target: str | Settings,
    topics: dict[str, str],
    done: Callable[[dict[str, list[Consumed]]], bool],
    timeout: float = 120.0,
    settle: float = 2.0,
    *,
    decided: Settings | None = None,
    to_end: bool = False,
) -> dict[str, list[Consumed]]:
    """Read `topics` ({role: topic name}) from the start until `done(seen)` holds, then on
    so that extra (unexpected) records show up too:

    - `decided` (the worker's settings): until the worker's group has committed the end of
      its input topic (`wait_committed`: everything it will write for that input is on the
      topics), then to the end of every partition. A condition, not a time.
    - `to_end`: to the end of every partition, as a read_committed reader sees it now.
    - else for `settle` seconds more (a time window, for outputs that come later by design).
    """
    by_topic = {name: role for role, name in topics.items()}
    consumer = Consumer(
        {
            **_connect(target),
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe(list(topics.values()))
    seen: dict[str, list[Consumed]] = {role: [] for role in topics}
    #: (topic, partition) -> the offset at which it last reached the readable end
    at_end: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    ends: dict[tuple[str, int], int] | None = None
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end[(msg.topic(), msg.partition())] = msg.offset()
                    continue
                role = by_topic[msg.topic()]
                seen[role].append(
                    Consumed(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        decode_record(SCHEMA_FOR[role], msg.value()),
                    )
                )
            if settle_until is None and ends is None and done(seen):
                if decided is not None:
                    wait_committed(
                        decided, decided.topics.events, max(1.0, deadline - time.monotonic())
                    )
                if decided is not None or to_end:
                    ends = _log_ends(target, list(topics.values()), decided is not None)
                else:
                    settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                return seen
            if ends is not None and all(at_end.get(tp, -1) >= end for tp, end in ends.items()):
                return seen
    finally:
        consumer.close()
    counts = {role: len(v) for role, v in seen.items()}
    raise TimeoutError(f"outputs incomplete after {timeout}s: {counts}")


def _log_ends(
    target: str | Settings, topics: list[str], written: bool
) -> dict[tuple[str, int], int]:
    """Per partition of `topics`, the offset a reader must reach: with `written`, the log's
    end now (every record written so far); else 0 (any end it reaches: what is readable).
    Asked by a client of its own: the reader's requests queue behind its long fetches."""
    client = Consumer({**_connect(target), "group.id": "test-log-ends"})
    try:
        ends = {}
        for topic in topics:
            for p in client.list_topics(topic, timeout=10).topics[topic].partitions:
                tp = TopicPartition(topic, p)
                ends[(topic, p)] = client.get_watermark_offsets(tp, timeout=10)[1] if written else 0
        return ends
    finally:
        client.close()


def read_visible(target: str | Settings, topics: dict[str, str]) -> dict[str, list[Consumed]]:
    """Every record of `topics` a read_committed reader can see now (e.g. after a SIGKILL:
    what the killed worker had committed)."""
    return consume_until(target, topics, lambda s: True, to_end=True)


def wait_committed(settings: Settings, topic: str, timeout: float = 60.0) -> None:
    """Wait until the worker's group (`settings.app_id`) has committed the end of every
    partition of `topic`: a runtime commits input offsets only after the state holding
    them is on the broker, so this is "everything so far is durable"."""
    consumer = Consumer({**_connect(settings), "group.id": settings.app_id})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        deadline = time.monotonic() + timeout
        while True:
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            done = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
            if all(end == 0 or done[p] >= end for p, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: committed {done}, log ends {ends}")
            time.sleep(0.2)
    finally:
        consumer.close()


#: the compression codec in a record batch's attributes (bits 0-2), by Kafka's number
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
_BATCH_HEAD = struct.Struct(">qiibIh")  # base offset, length, leader epoch, magic, crc, attributes
_CONTROL = 0x20  # a transaction marker: never compressed


def batch_codecs(broker_data_dir: Path, topic: str) -> Counter[str]:
    """Record batches per compression codec in `topic`'s log segments on a local broker's
    disk: what the producers wrote, as the broker stored it (it keeps the producer's codec
    at its default `compression.type=producer`)."""
    codecs: Counter[str] = Counter()
    for segment in broker_data_dir.glob(f"{topic}-[0-9]*/*.log"):
        data, at = segment.read_bytes(), 0
        while at + _BATCH_HEAD.size <= len(data):
            _, length, _, _, _, attributes = _BATCH_HEAD.unpack_from(data, at)
            if length <= 0:
                break
            if not attributes & _CONTROL:
                codecs[CODECS[attributes & 0x07]] += 1
            at += 12 + length
    return codecs
