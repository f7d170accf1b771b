"""A worker's end of the audit chain: tails read once per partition, headers on audit
records only, read again after `forget`."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.contracts.audit_chain import GENESIS, PREV_HEADER, record_hash
from pipeline.kafka.audit_tail import AuditLinker
from pipeline.processing.batch import OutputRecord
from pipeline.settings import Settings

S = Settings()
TAIL = record_hash(GENESIS, b"k", b"before")


def test_tails_are_read_once_and_only_audit_records_are_linked() -> None:
    reads: list[set[int]] = []

    def tails(_settings: Settings, topic: str, partitions: Iterable[int]) -> dict[int, bytes]:
        assert topic == S.topics.audit
        reads.append(set(partitions))
        return {p: TAIL for p in partitions}

    linker = AuditLinker(S, tails)
    outputs = [
        OutputRecord(S.topics.audit, b"c1", b"a", 2),
        OutputRecord(S.topics.approved, b"c1", b"x", 2),
        OutputRecord(S.topics.audit, b"c1", b"b", 2),
    ]
    assert linker.missing(outputs) == {2}
    linker.seed(outputs)
    linker.seed(outputs)
    assert reads == [{2}] and linker.missing(outputs) == set()
    first, other, second = (linker.headers(o) for o in outputs)
    assert other is None
    assert first == [(PREV_HEADER, TAIL)]
    assert second == [(PREV_HEADER, record_hash(TAIL, b"c1", b"a"))]
    linker.forget([2])
    linker.seed(outputs)
    assert reads == [{2}, {2}]
