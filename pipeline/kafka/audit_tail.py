"""Reading the audit chain off the broker: the tail a worker links its next record to, and
the records `tower audit verify` walks.

A tail is read backwards in growing windows from the partition's end (or from a given
offset) to its last chained record; `read_committed`, so records of an aborted or still open
transaction are never linked to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from confluent_kafka import Consumer, Message

from pipeline.contracts.audit_chain import (
    GENESIS,
    AuditChain,
    MalformedLink,
    prev_of,
    record_hash,
)
from pipeline.kafka.reader import RangeReader, scan_consumer, watermarks
from pipeline.processing.batch import OutputRecord
from pipeline.settings import Settings

#: how far back a tail is looked for before the partition counts as unchained so far
MAX_LOOKBACK = 100_000
_FIRST_WINDOW = 64


class TailReader(Protocol):
    def __call__(
        self, settings: Settings, topic: str, partitions: Iterable[int]
    ) -> dict[int, bytes]: ...


def chain_tails(
    settings: Settings,
    topic: str,
    partitions: Iterable[int],
    before: dict[int, int] | None = None,
    timeout_s: float = 30.0,
) -> dict[int, bytes]:
    """Per partition, the chain hash of its last chained record (before the offset given in
    `before`, else before its end); GENESIS where there is none."""
    consumer = scan_consumer(settings, "audit-chain", timeout_s)
    try:
        return {p: _tail(consumer, topic, p, (before or {}).get(p), timeout_s) for p in partitions}
    finally:
        consumer.close()


def _tail(
    consumer: Consumer, topic: str, partition: int, before: int | None, timeout_s: float
) -> bytes:
    low, high = watermarks(consumer, topic, partition, timeout_s)
    end = high if before is None else min(before, high)
    window = _FIRST_WINDOW
    while end > low and high - end < MAX_LOOKBACK:
        start = max(low, end - window)
        last: bytes | None = None
        for msg in RangeReader(consumer, topic, {partition: (start, end)}, timeout_s).records():
            linked = _chain_hash(msg)
            if linked is not None:
                last = linked
        if last is not None:
            return last
        end, window = start, window * 4
    return GENESIS


def _chain_hash(msg: Message) -> bytes | None:
    try:
        prev = prev_of(msg.headers())
    except MalformedLink:
        return None
    return None if prev is None else record_hash(prev, msg.key(), msg.value())


def partition_records(
    settings: Settings,
    topic: str,
    partition: int,
    start: int | None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 50_000,
    timeout_s: float = 30.0,
) -> Iterator[Message]:
    """One partition's records from `start` (its first offset with None) to its end now."""
    consumer = scan_consumer(settings, "audit-verify", timeout_s)
    try:
        low, high = watermarks(consumer, topic, partition, timeout_s)
        first = low if start is None else max(low, start)
        reader = RangeReader(consumer, topic, {partition: (first, high)}, timeout_s)
        for read, msg in enumerate(reader.records(), start=1):
            if progress is not None and read % progress_every == 0:
                progress(read, high - first)
            yield msg
    finally:
        consumer.close()


class AuditLinker:
    """A worker's end of the chain: the tails of the audit partitions it writes, seeded from
    the topic before a partition's first record, and the header each audit output carries.
    Outputs of other topics carry none."""

    def __init__(self, settings: Settings, read_tails: TailReader = chain_tails) -> None:
        self.settings = settings
        self.topic = settings.topics.audit
        self.chain = AuditChain()
        self._read_tails = read_tails

    def seed(self, outputs: Iterable[OutputRecord]) -> None:
        """Read the tails of the audit partitions `outputs` write that have none yet
        (blocking: from a worker thread in an event loop)."""
        missing = self.missing(outputs)
        if missing:
            for partition, tail in self._read_tails(self.settings, self.topic, missing).items():
                self.chain.seed(partition, tail)

    def missing(self, outputs: Iterable[OutputRecord]) -> set[int]:
        """The audit partitions `outputs` write whose tails are not known yet."""
        return self.chain.unseeded(o.partition for o in outputs if o.topic == self.topic)

    def headers(self, out: OutputRecord) -> list[tuple[str, bytes]] | None:
        if out.topic != self.topic:
            return None
        return self.chain.link(out.partition, out.key, out.value)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Re-seed these partitions (all with None) before their next record: they were
        revoked, or records linked to were aborted or never acknowledged."""
        self.chain.forget(partitions)
