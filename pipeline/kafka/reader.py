"""Reading a partition to an end fixed up front: the one bounded read every tool shares.

The audit scans, a customer's timeline, the changelog restore, the policy commands and the
sequence guard's probe all read "from here to the end it has now". Records produced while
reading are not waited for, so a read always ends. The end is reached when the next offset
is past it, when the consumer reports the partition's end (`enable.partition.eof`; for a
`read_committed` reader that lies before an open transaction), or when the consumer's
position passed it while nothing came (the last offsets were transaction markers or were
compacted away). Partitions are assigned directly: no consumer group, nothing committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.kafka import clients
from pipeline.settings import Settings

#: what the broker answers for a topic the user's ACLs do not cover
TOPIC_REFUSED = KafkaError.TOPIC_AUTHORIZATION_FAILED

#: called with (records read, records to read) every `progress_every` records and at the end
Progress = Callable[[int, int], None]


class ScanError(Exception):
    """The topic cannot be read (missing, broker unreachable); the message says which."""


class TopicRefused(ScanError):
    """The user's ACLs do not let it read the topic (a role without the grant)."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def scan_consumer(
    settings: Settings, purpose: str, timeout_s: float = 30.0, **conf: Any
) -> Consumer:
    """A `read_committed` reader that reports partition ends."""
    return clients.reader(
        settings,
        purpose,
        **{
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
            **conf,
        },
    )


class RangeReader:
    """Batches of records of one topic's partitions, each in its [start, end), read at
    once; `positions` then holds the offset each partition's read got to (its end, or
    less where a `read_committed` read stopped at an open transaction)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        ranges: dict[int, tuple[int, int]],
        timeout_s: float = 30.0,
    ) -> None:
        self.consumer, self.topic, self.timeout_s = consumer, topic, timeout_s
        self.ends = {p: end for p, (start, end) in ranges.items()}
        self.positions = {p: start for p, (start, end) in ranges.items()}

    def batches(self, max_records: int = 1000) -> Iterator[list[Message]]:
        pending = {p for p, end in self.ends.items() if self.positions[p] < end}
        if not pending:
            return
        self.consumer.assign([TopicPartition(self.topic, p, self.positions[p]) for p in pending])
        deadline = time.monotonic() + self.timeout_s
        try:
            while pending:
                polled = self.consumer.consume(max_records, 0.5)
                batch = []
                for msg in polled:
                    p = msg.partition()
                    if p not in pending:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise ScanError(f"reading {self.topic}: {err}")
                        self.positions[p] = max(self.positions[p], offset_of(msg))
                        pending.discard(p)
                    elif offset_of(msg) >= self.ends[p]:
                        self.positions[p] = self.ends[p]
                        pending.discard(p)
                    else:
                        self.positions[p] = offset_of(msg) + 1
                        batch.append(msg)
                        if self.positions[p] >= self.ends[p]:
                            pending.discard(p)
                if batch:
                    yield batch
                if polled:
                    deadline = time.monotonic() + self.timeout_s
                    continue
                for p in list(pending):  # the rest were transaction markers or compacted
                    if self._consumer_position(p) >= self.ends[p]:
                        self.positions[p] = self.ends[p]
                        pending.discard(p)
                if pending and time.monotonic() > deadline:
                    where = ", ".join(
                        f"{p} at {self.positions[p]} of {self.ends[p]}" for p in pending
                    )
                    raise ScanError(
                        f"{self.topic}: no records for {self.timeout_s:g} s with partitions "
                        f"{where} not read to their end; is the broker still up?"
                    )
        finally:
            self.consumer.unassign()

    def records(self) -> Iterator[Message]:
        for batch in self.batches():
            yield from batch

    def _consumer_position(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        offset: int = self.consumer.position([tp])[0].offset
        return offset


def read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, timeout_s: float
) -> Iterator[Message]:
    """One partition's records in [start, end)."""
    return RangeReader(consumer, topic, {partition: (start, end)}, timeout_s).records()


def offset_of(msg: Message) -> int:
    """A consumed message's offset (the client types it optional: not for produced ones)."""
    offset = msg.offset()
    assert offset is not None
    return offset


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """(first offset, end offset) now; ScanError if the broker does not say."""
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
    except KafkaException as exc:
        raise ScanError(f"cannot read {topic} partition {partition}: {exc.args[0]}") from None
    return low, high


def partition_count(consumer: Consumer, settings: Settings, topic: str, timeout_s: float) -> int:
    """The topic's partitions; ScanError naming the fix if it is missing or unreachable."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise ScanError(
            f"cannot reach Kafka on {settings.bootstrap} ({exc.args[0]}); start it with "
            "`tower kafka up` or pass --bootstrap"
        ) from None
    info = meta.topics.get(topic)
    if info is not None and info.error is not None and info.error.code() == TOPIC_REFUSED:
        raise TopicRefused(
            f"user {settings.sasl_username or '(none)'!r} may not read topic {topic!r} on "
            f"{settings.bootstrap}: grant it READ and DESCRIBE there, or connect as a role "
            "that has them (TOWER_SASL_USERNAME)"
        )
    if info is None or info.error is not None or not info.partitions:
        raise ScanError(
            f"topic {topic!r} does not exist on {settings.bootstrap}; create the topics with "
            "`tower topics create`, or check TOWER_TOPIC_* and --bootstrap"
        )
    return len(info.partitions)


def scan_topic(
    settings: Settings,
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
    consumer = scan_consumer(settings, "scan", timeout_s)
    try:
        partitions = partition_count(consumer, settings, topic, timeout_s)
        ranges = [(p, *watermarks(consumer, topic, p, timeout_s)) for p in range(partitions)]
        total = sum(high - low for _, low, high in ranges)
        read = 0
        for partition, low, high in ranges:
            for msg in read_range(consumer, topic, partition, low, high, timeout_s):
                read += 1
                if progress is not None and read % progress_every == 0:
                    progress(read, total)
                key, value = msg.key(), msg.value()
                if keep is None or keep(key, value):
                    yield TopicRecord(topic, partition, offset_of(msg), key, value)
        if progress is not None and total >= progress_every:
            progress(total, total)
    finally:
        consumer.close()


def read_tail(
    settings: Settings,
    topic: str,
    partition: int,
    last: int,
    keep: Callable[[bytes | None], bool],
    timeout_s: float = 10.0,
) -> list[TopicRecord]:
    """Records among the partition's newest `last` offsets whose key `keep` accepts."""
    consumer = scan_consumer(settings, "timeline", timeout_s)
    try:
        return _tail(consumer, topic, partition, last, keep, timeout_s)
    finally:
        consumer.close()


def _tail(
    consumer: Consumer,
    topic: str,
    partition: int,
    last: int,
    keep: Callable[[bytes | None], bool],
    timeout_s: float,
) -> list[TopicRecord]:
    low, high = watermarks(consumer, topic, partition, timeout_s)
    start = max(low, high - last)
    return [
        TopicRecord(topic, partition, offset_of(msg), msg.key(), msg.value())
        for msg in read_range(consumer, topic, partition, start, high, timeout_s)
        if keep(msg.key())
    ]


class TailReader:
    """`read_tail` on one long-lived consumer, for reads that come often (a customer page
    each): a consumer per read would cost a connection, a metadata round trip and a
    consumer's buffers every time. Reads take turns (a consumer is not shared between
    threads); the consumer is made on the first read and closed by `close`."""

    def __init__(self, settings: Settings, purpose: str, timeout_s: float = 10.0) -> None:
        self.settings, self.purpose, self.timeout_s = settings, purpose, timeout_s
        self._consumer: Consumer | None = None
        self._closed = False
        self._lock = threading.Lock()

    def read(
        self, topic: str, partition: int, last: int, keep: Callable[[bytes | None], bool]
    ) -> list[TopicRecord]:
        """As `read_tail`; ScanError once closed."""
        with self._lock:
            if self._closed:
                raise ScanError(f"{topic}: the reader is closed (the server is stopping)")
            if self._consumer is None:
                self._consumer = scan_consumer(self.settings, self.purpose, self.timeout_s)
            return _tail(self._consumer, topic, partition, last, keep, self.timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def first_record_at(
    settings: Settings, topic: str, partition: int, offset: int, timeout_s: float = 5.0
) -> tuple[int | None, int]:
    """(offset of the first record at or after `offset`, or None if there is none before
    the log end; the log end). If the records do not come in time: (`offset`, end), i.e.
    "assume a record is there", so the sequence guard never skips on a missing answer; if
    not even the log end can be read (every broker down): ScanError.

    Reads uncommitted, as the Faust runtime's consumer does (aiokafka's default): the same
    records, the same holes."""
    consumer = clients.reader(
        settings,
        "probe",
        **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"},
    )
    try:
        low, high = watermarks(consumer, topic, partition, timeout_s)
        try:
            for msg in read_range(consumer, topic, partition, max(offset, low), high, timeout_s):
                return offset_of(msg), high
        except ScanError:
            return offset, high
        return None, high
    finally:
        consumer.close()
