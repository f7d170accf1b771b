"""A worker's end of the audit chain: tails read once per partition, one seal per partition
on the last audit record of a batch, tails read again after `forget`."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.contracts.audit_chain import GENESIS, Seal, run_hash, seal_of
from pipeline.kafka.audit_tail import AuditLinker
from pipeline.processing.batch import OutputRecord
from pipeline.settings import Settings

S = Settings()
TAIL = run_hash(GENESIS, [(b"k", b"before")])


def test_tails_are_read_once_and_only_the_last_audit_record_is_sealed() -> None:
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
        OutputRecord(S.topics.approved, b"c1", b"y", 2),
    ]
    assert linker.missing(outputs) == {2}
    linker.seed(outputs)
    linker.seed(outputs)
    assert reads == [{2}] and linker.missing(outputs) == set()
    seals = linker.seals(outputs)
    assert list(seals) == [2]
    run = run_hash(TAIL, [(b"c1", b"a"), (b"c1", b"b")])
    assert seal_of(seals[2]) == Seal(2, TAIL, run)
    [again] = linker.seals(outputs[:1]).values()
    assert seal_of(again) == Seal(1, run, run_hash(run, [(b"c1", b"a")]))
    linker.forget([2])
    linker.seed(outputs)
    assert reads == [{2}, {2}]
