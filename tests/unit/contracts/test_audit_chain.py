"""The audit hash chain: links made by a worker verify; any record changed, inserted,
removed or mislinked breaks the chain at the first offset that no longer fits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.audit_chain import (
    BAD_HEADER,
    GENESIS,
    PREV_HEADER,
    WRONG_LINK,
    AuditChain,
    PartitionCheck,
    prev_of,
    record_hash,
)

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]


def chained(values: list[bytes], tail: bytes = GENESIS) -> list[Record]:
    chain = AuditChain()
    chain.seed(0, tail)
    return [(b"c1", v, chain.link(0, b"c1", v)) for v in values]


def check(records: list[Record], tail: bytes = GENESIS) -> PartitionCheck:
    c = PartitionCheck(0, tail)
    for offset, (key, value, headers) in enumerate(records):
        if not c.feed(offset, key, value, headers):
            break
    return c


def test_the_hash_separates_key_and_value() -> None:
    assert record_hash(GENESIS, b"ab", b"c") != record_hash(GENESIS, b"a", b"bc")
    assert record_hash(GENESIS, None, b"x") != record_hash(GENESIS, b"", b"x")
    assert record_hash(GENESIS, b"k", b"v") != record_hash(bytes([1]) * 32, b"k", b"v")


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_a_worker_chain_verifies(values: list[bytes]) -> None:
    c = check(chained(values))
    assert c.broken is None and c.outside == [] and c.checked == len(values)


FORGED = b'{"outcome":"approved"}'


@pytest.mark.parametrize(
    ("tamper", "offset", "reason"),
    [
        # a record inserted with the header copied from its neighbour
        (lambda r: r.insert(2, (b"c1", FORGED, r[2][2])), 3, WRONG_LINK),
        # a record inserted with a made-up link
        (lambda r: r.insert(2, (b"c1", FORGED, [(PREV_HEADER, b"\x07" * 32)])), 2, WRONG_LINK),
        # a value changed: the next record no longer names it
        (lambda r: r.__setitem__(1, (b"c1", FORGED, r[1][2])), 2, WRONG_LINK),
        # a record removed
        (lambda r: r.pop(1), 1, WRONG_LINK),
        (lambda r: r.insert(1, (b"c1", FORGED, [(PREV_HEADER, b"zz")])), 1, BAD_HEADER),
    ],
)
def test_a_tampered_chain_breaks_at_the_first_record_that_no_longer_fits(
    tamper, offset: int, reason: str
) -> None:
    records = chained([b"a", b"b", b"c", b"d"])
    tamper(records)
    c = check(records)
    assert c.broken is not None
    assert (c.broken.offset, c.broken.reason.split(" (")[0]) == (offset, reason)


def test_a_record_without_the_header_is_outside_the_chain_and_skipped() -> None:
    records = chained([b"a", b"b", b"c"])
    records.insert(1, (b"-", FORGED, None))
    c = check(records)
    assert c.broken is None and c.outside == [1]


def test_a_check_from_an_offset_starts_at_the_tail_before_it() -> None:
    records = chained([b"a", b"b", b"c"])
    tail = record_hash(prev_of(records[0][2]) or GENESIS, b"c1", b"a")
    c = PartitionCheck(0, tail)
    for offset, (key, value, headers) in enumerate(records[1:], start=1):
        c.feed(offset, key, value, headers)
    assert c.broken is None and c.checked == 2
    wrong = check(records[1:])  # from genesis the second record does not fit
    assert wrong.broken is not None and wrong.broken.offset == 0


def test_without_an_anchor_the_first_link_is_taken_as_it_is() -> None:
    records = chained([b"a", b"b", b"c"])[1:]  # what retention left
    c = PartitionCheck(0, anchored=False)
    for offset, (key, value, headers) in enumerate(records, start=1):
        c.feed(offset, key, value, headers)
    assert c.broken is None and c.checked == 2


def test_a_chain_continues_from_its_seed_and_forgets() -> None:
    chain = AuditChain()
    assert chain.unseeded([0, 1]) == {0, 1}
    chain.seed(0, GENESIS)
    [(name, first)] = chain.link(0, b"k", b"v")
    assert (name, first) == (PREV_HEADER, GENESIS)
    [(_, second)] = chain.link(0, b"k", b"w")
    assert second == record_hash(GENESIS, b"k", b"v")
    chain.forget([0])
    assert not chain.seeded(0)
