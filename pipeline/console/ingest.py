"""Feeds the read model from the topics: a consumer of the console's own group, assigned
the partitions of `audit`, `deadletter` and `policies` at the offsets the store holds.

The store is the offsets' source of truth (they commit with the rows); the group's
committed offsets are written after each batch too, so `kafka-consumer-groups` and lag
alerts see how far behind the console is. A record that does not decode is counted and
skipped: `tower audit verify` is the tool that judges the topics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.console.decoding import Decoders, Item, table_of
from pipeline.console.store import (
    AUDIT,
    DEADLETTER,
    POLICIES,
    Batch,
    Store,
    audit_row,
    deadletter_row,
)
from pipeline.contracts.codec import decode_record
from pipeline.kafka import clients
from pipeline.kafka.schema_registry import RegistryUnavailable, lookup_for
from pipeline.settings import Settings

log = logging.getLogger(__name__)
#: records read before a batch is written
BATCH_RECORDS = 20_000
#: how long a partial batch waits for more
BATCH_WITHIN_S = 0.25
#: audit records per chunk a decoding process takes
CHUNK_RECORDS = 2_500


def console_group(settings: Settings) -> str:
    return f"{settings.app_id}-console"


class Ingest:
    """Reads the topics into `store` until `stop()`; `run()` in a thread of its own."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consumer_factory: Callable[[Settings], Consumer] | None = None,
        processes: int | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.topics = {
            settings.topics.audit: AUDIT,
            settings.topics.deadletter: DEADLETTER,
            settings.topics.policies: POLICIES,
        }
        self._factory = consumer_factory or self._consumer
        self._stopping = threading.Event()
        self.undecodable = 0
        self.ingested = 0
        #: set once the topics were read to their end as of the start
        self.caught_up = threading.Event()
        self.error: str | None = None
        self._lookup = lookup_for(settings)
        #: decoding processes [default: the CPUs, at most 4]
        self.processes = processes

    @staticmethod
    def _consumer(settings: Settings) -> Consumer:
        return clients.group_consumer(
            settings,
            console_group(settings),
            **{
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "logger": clients.QUIET,
            },
        )

    def stop(self) -> None:
        self._stopping.set()

    def _assignment(
        self, consumer: Consumer
    ) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
        stored = self.store.offsets()
        assignment: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for topic, kind in self.topics.items():
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            for p in sorted(meta.partitions):
                start = stored.get((kind, p), OFFSET_BEGINNING)
                assignment.append(TopicPartition(topic, p, start))
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > max(start, 0):
                    ends[(kind, p)] = high
        return assignment, ends

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run_once()
                return
            except KafkaException as exc:  # the broker or a topic is not there yet: retry
                self.error = f"cannot read the topics: {exc}"
                log.warning("console ingest: %s; retrying in 2 s", self.error)
                self._stopping.wait(2.0)

    def _run_once(self) -> None:
        consumer = self._factory(self.settings)
        decoders = None if self._lookup is not None else Decoders(self.processes)
        try:
            assignment, behind = self._assignment(consumer)
            consumer.assign(assignment)
            self.error = None
            if not behind:
                self.caught_up.set()
            waiting: tuple[Batch, list[Future[tuple[bytes, int]]]] | None = None
            while not self._stopping.is_set():
                batch, items = self._read(consumer)
                futures = [] if decoders is None else self._submit(decoders, items)
                if waiting is not None:  # decoded meanwhile: in order, one batch behind
                    self._write(consumer, *waiting, behind)
                    waiting = None
                if batch.next_offsets:
                    waiting = (batch, futures)
                    if not futures:
                        self._write(consumer, batch, [], behind)
                        waiting = None
        finally:
            if decoders is not None:
                decoders.close()
            consumer.close()

    def _submit(self, decoders: Decoders, items: list[Item]) -> list[Future[tuple[bytes, int]]]:
        return [
            decoders.submit(items[i : i + CHUNK_RECORDS])
            for i in range(0, len(items), CHUNK_RECORDS)
        ]

    def _write(
        self,
        consumer: Consumer,
        batch: Batch,
        futures: list[Future[tuple[bytes, int]]],
        behind: dict[tuple[str, int], int],
    ) -> None:
        for future in futures:
            ipc, bad = future.result()
            self.undecodable += bad
            batch.audit_tables.append(table_of(ipc))
        self.store.add(batch)
        self.ingested += len(batch)
        self._commit(consumer, batch)
        for key, nxt in batch.next_offsets.items():
            if key in behind and nxt >= behind[key]:
                del behind[key]
        if not behind:
            self.caught_up.set()

    def _read(self, consumer: Consumer) -> tuple[Batch, list[Item]]:
        """A batch of records; the audit values to decode elsewhere, if a pool decodes."""
        batch = Batch()
        items: list[Item] = []
        deadline = time.monotonic() + BATCH_WITHIN_S
        while len(batch) + len(items) < BATCH_RECORDS and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for msg in consumer.consume(5000, timeout=left):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("console ingest: %s", err)
                    continue
                partition, offset = msg.partition(), msg.offset()
                if partition is None or offset is None:
                    continue
                if self._lookup is None and self.topics.get(msg.topic() or "") == AUDIT:
                    batch.next_offsets[(AUDIT, partition)] = offset + 1
                    items.append((partition, offset, msg.value() or b""))
                else:
                    self._add(batch, msg)
        return batch, items

    def _add(self, batch: Batch, msg: Any) -> None:
        kind = self.topics[msg.topic()]
        partition, offset = msg.partition(), msg.offset()
        batch.next_offsets[(kind, partition)] = offset + 1
        value = msg.value()
        if kind == POLICIES:
            batch.policies.append(
                {
                    "offset": offset,
                    "key": (msg.key() or b"").decode(errors="replace"),
                    "value": None if value is None else value.decode(errors="replace"),
                    "written_at": msg.timestamp()[1],
                }
            )
            return
        name = "audit_record" if kind == AUDIT else "dead_letter"
        try:
            record = decode_record(name, value or b"", self._lookup)
        except (ValueError, RegistryUnavailable) as exc:
            self.undecodable += 1
            if self.undecodable <= 3:
                log.warning(
                    "console ingest: %s[%d]@%d skipped: %s", msg.topic(), partition, offset, exc
                )
            return
        if kind == AUDIT:
            batch.audit.append(audit_row(partition, offset, record))
        else:
            batch.deadletter.append(deadletter_row(partition, offset, record))

    def _commit(self, consumer: Consumer, batch: Batch) -> None:
        kinds = {kind: topic for topic, kind in self.topics.items()}
        offsets = [TopicPartition(kinds[k], p, o) for (k, p), o in batch.next_offsets.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # only the lag view misses it; the store has them
            log.debug("console ingest: commit to the group failed: %s", exc)
