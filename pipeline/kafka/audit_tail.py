"""Reading the audit chain off the broker: the last seal, whose hash a worker links its next
run to, and the records `tower audit verify` walks.

The last seal is looked for backwards in growing windows from the partition's end (or from
a given offset); `read_committed`, so runs of an aborted or still open transaction are never
linked to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from confluent_kafka import Consumer, Message

from pipeline.contracts.audit_chain import GENESIS, AuditChain, MalformedSeal, seal_of
from pipeline.kafka.reader import RangeReader, scan_consumer, watermarks
from pipeline.processing.batch import OutputRecord
from pipeline.settings import Settings

#: how far back a seal is looked for before the partition counts as unchained so far
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
    timeout_s: float = 30.0,
) -> dict[int, bytes]:
    """Per partition, the hash of its last sealed run; GENESIS where there is none."""
    found = last_seals(settings, topic, {p: None for p in partitions}, timeout_s)
    return {p: GENESIS if seal is None else seal[1] for p, seal in found.items()}


def last_seals(
    settings: Settings,
    topic: str,
    before: dict[int, int | None],
    timeout_s: float = 30.0,
) -> dict[int, tuple[int, bytes] | None]:
    """Per partition, the offset and run hash of its last seal before the offset given
    (before its end with None); None where there is none."""
    consumer = scan_consumer(settings, "audit-chain", timeout_s)
    try:
        return {p: _last_seal(consumer, topic, p, end, timeout_s) for p, end in before.items()}
    finally:
        consumer.close()


def _last_seal(
    consumer: Consumer, topic: str, partition: int, before: int | None, timeout_s: float
) -> tuple[int, bytes] | None:
    low, high = watermarks(consumer, topic, partition, timeout_s)
    end = high if before is None else min(before, high)
    window = _FIRST_WINDOW
    while end > low and high - end < MAX_LOOKBACK:
        start = max(low, end - window)
        last: tuple[int, bytes] | None = None
        for msg in RangeReader(consumer, topic, {partition: (start, end)}, timeout_s).records():
            run = _run_hash(msg)
            offset = msg.offset()
            if run is not None and offset is not None:
                last = (offset, run)
        if last is not None:
            return last
        end, window = start, window * 4
    return None


def _run_hash(msg: Message) -> bytes | None:
    try:
        seal = seal_of(msg.headers())
    except MalformedSeal:
        return None
    return None if seal is None else seal.hash


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
    """A worker's end of the chain: the last run hashes of the audit partitions it writes,
    seeded from the topic before a partition's first run, and the seals of each batch of
    outputs. Outputs of other topics carry none."""

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
        topic = self.topic
        return self.chain.unseeded({o.partition for o in outputs if o.topic == topic})

    def seals(self, outputs: Sequence[OutputRecord]) -> dict[int, list[tuple[str, bytes]]]:
        """The headers of `outputs`, written in this order: output index -> seal, on the
        last audit record of each partition; the other records carry none."""
        return self.chain.seal(outputs, self.topic)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Re-seed these partitions (all with None) before their next run: they were
        revoked, or runs linked to were aborted or never acknowledged."""
        self.chain.forget(partitions)
