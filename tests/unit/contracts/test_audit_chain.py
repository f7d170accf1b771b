"""The audit hash chain, one seal per run: runs sealed by a worker verify; any record changed,
inserted, removed or moved breaks the chain at the seal of its run or the next one, records
no seal covers are listed, and a worker that starts again continues from the last seal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import audit_chain
from pipeline.contracts.audit_chain import (
    BAD_HEADER,
    GENESIS,
    SEAL_HEADER,
    SHORT_RUN,
    WRONG_HASH,
    WRONG_LINK,
    AuditChain,
    PartitionCheck,
    Seal,
    run_hash,
    seal_of,
)
from pipeline.processing.batch import OutputRecord

AUDIT = "audit"
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]
FORGED = b'{"outcome":"approved"}'


def chained(runs: list[list[bytes]], chain: AuditChain | None = None) -> list[Record]:
    """The records a worker writes to partition 0, one run per inner list."""
    if chain is None:
        chain = AuditChain()
        chain.seed(0, GENESIS)
    records: list[Record] = []
    for values in runs:
        outputs = [OutputRecord(AUDIT, b"c1", v, 0) for v in values]
        seals = chain.seal(outputs, AUDIT)
        records += [(o.key, o.value, seals.get(i)) for i, o in enumerate(outputs)]
    return records


def check(records: list[Record], tail: bytes = GENESIS, anchored: bool = True) -> PartitionCheck:
    c = PartitionCheck(0, tail, anchored=anchored)
    for offset, (key, value, headers) in enumerate(records):
        if not c.feed(offset, key, value, headers):
            break
    return c.finish()


def tail_of(records: list[Record]) -> bytes:
    """What a worker seeds from: the hash in the last seal."""
    seals = [s for s in (seal_of(h) for _, _, h in records) if s is not None]
    return seals[-1].hash if seals else GENESIS


def seal_header(length: int, prev: bytes, digest: bytes) -> list[tuple[str, bytes]]:
    return Seal(length, prev, digest).header()


def swap(r: list[Record], i: int, j: int) -> None:
    r[i], r[j] = r[j], r[i]


# three runs at offsets 0-2, 3-4 and 5-7; the seals on 2, 4 and 7
RUNS = [[b"a", b"b", b"c"], [b"d", b"e"], [b"f", b"g", b"h"]]


def run1_hash() -> bytes:
    return run_hash(GENESIS, [(b"c1", b"a"), (b"c1", b"b"), (b"c1", b"c")])


Tamper = Callable[[list[Record]], object]
BREAKS: list[tuple[str, Tamper, int, int, str]] = [
    # (what, tamper, offset of the seal that breaks, first offset of its run, why)
    ("a value changed", lambda r: r.__setitem__(1, (b"c1", FORGED, None)), 2, 0, WRONG_HASH),
    (
        "a sealed record's value changed",
        lambda r: r.__setitem__(2, (b"c1", FORGED, r[2][2])),
        2,
        0,
        WRONG_HASH,
    ),
    ("a key changed", lambda r: r.__setitem__(0, (b"c2", b"a", None)), 2, 0, WRONG_HASH),
    ("a record removed from a run", lambda r: r.pop(3), 3, 3, SHORT_RUN),
    ("the partition's first record removed", lambda r: r.pop(0), 1, 0, SHORT_RUN),
    ("a whole run removed", lambda r: (r.pop(3), r.pop(3)), 5, 3, WRONG_LINK),
    ("a run's seal removed", lambda r: r.pop(4), 6, 4, WRONG_LINK),
    (
        "a record inserted into a run",
        lambda r: r.insert(1, (b"c1", FORGED, None)),
        3,
        1,
        WRONG_HASH,
    ),
    (
        "a record inserted with a seal copied from its neighbour",
        lambda r: r.insert(3, (b"c1", FORGED, r[2][2])),
        3,
        3,
        SHORT_RUN,
    ),
    (
        "a record inserted with a made-up seal",
        lambda r: r.insert(3, (b"c1", FORGED, seal_header(1, run1_hash(), b"\x07" * 32))),
        3,
        3,
        WRONG_HASH,
    ),
    (
        # correct for the run before it (the chain has no key): the next run no longer fits
        "a run inserted with a correctly computed seal",
        lambda r: r.insert(
            3,
            (
                b"c1",
                FORGED,
                seal_header(1, run1_hash(), run_hash(run1_hash(), [(b"c1", FORGED)])),
            ),
        ),
        5,
        4,
        WRONG_LINK,
    ),
    ("two records of a run swapped", lambda r: swap(r, 0, 1), 2, 0, WRONG_HASH),
    (
        "a sealed record swapped with the next run's first",
        lambda r: swap(r, 2, 3),
        3,
        1,
        WRONG_HASH,
    ),
    ("two runs swapped", lambda r: r.__setitem__(slice(3, 8), r[5:8] + r[3:5]), 5, 3, WRONG_LINK),
    (
        "a malformed seal",
        lambda r: r.insert(3, (b"c1", FORGED, [(SEAL_HEADER, b"zz")])),
        3,
        3,
        BAD_HEADER,
    ),
    (
        "a seal of no records",
        lambda r: r.insert(3, (b"c1", FORGED, seal_header(0, GENESIS, GENESIS))),
        3,
        3,
        BAD_HEADER,
    ),
]


@pytest.mark.parametrize(
    ("tamper", "offset", "run_start", "reason"),
    [b[1:] for b in BREAKS],
    ids=[b[0] for b in BREAKS],
)
def test_a_tampered_chain_breaks_at_the_seal_that_no_longer_fits(
    tamper: Tamper, offset: int, run_start: int, reason: str
) -> None:
    records = chained(RUNS)
    tamper(records)
    c = check(records)
    assert c.broken is not None
    assert (c.broken.offset, c.broken.run_start, c.broken.reason.split(" (")[0]) == (
        offset,
        run_start,
        reason.split(" (")[0],
    )


UNSEALED: list[tuple[str, Tamper, list[int], list[int]]] = [
    # (what, tamper, offsets outside the chain, offsets not sealed at the end)
    ("a record without a seal between runs", lambda r: r.insert(3, (b"-", FORGED, None)), [3], []),
    (
        "records without a seal at the end",
        lambda r: r.extend([(b"-", FORGED, None)] * 2),
        [],
        [8, 9],
    ),
    ("the last run's seal cut off", lambda r: r.pop(), [], [5, 6]),
]


@pytest.mark.parametrize(
    ("tamper", "outside", "unsealed"),
    [u[1:] for u in UNSEALED],
    ids=[u[0] for u in UNSEALED],
)
def test_records_no_seal_covers_are_listed_without_a_break(
    tamper: Tamper, outside: list[int], unsealed: list[int]
) -> None:
    records = chained(RUNS)
    tamper(records)
    c = check(records)
    assert c.broken is None
    assert (c.outside, c.unsealed) == (outside, unsealed)


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), max_size=8))
def test_a_worker_chain_verifies(runs: list[list[bytes]]) -> None:
    c = check(chained(runs))
    assert c.broken is None and c.outside == [] and c.unsealed == []
    assert (c.checked, c.runs) == (sum(map(len, runs)), len(runs))


def detected(c: PartitionCheck) -> bool:
    return c.broken is not None or bool(c.outside) or bool(c.unsealed)


RUNS_STRATEGY = st.lists(
    st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=5), min_size=1, max_size=6
)


@settings(max_examples=500)
@given(RUNS_STRATEGY, st.data())
def test_any_single_record_tampering_is_detected(runs: list[list[bytes]], data) -> None:
    """Changed, inserted (without a seal, with a copied or a made-up one), removed (except
    the partition's last record: cut from the end, a record is as if never written) or
    swapped with its neighbour: the check says so."""
    records = chained(runs)
    n = len(records)
    kind = data.draw(st.sampled_from(["change", "key", "insert", "remove", "swap"]))
    if kind == "change":
        i = data.draw(st.integers(0, n - 1))
        key, value, headers = records[i]
        records[i] = (key, value + b"!", headers)
    elif kind == "key":
        i = data.draw(st.integers(0, n - 1))
        _, value, headers = records[i]
        records[i] = (b"c2", value, headers)
    elif kind == "insert":
        i = data.draw(st.integers(0, n))
        copied = data.draw(st.integers(0, n - 1))
        headers = data.draw(
            st.sampled_from(
                [None, records[copied][2], seal_header(1, tail_of(records[:i]), bytes(32))]
            )
        )
        records.insert(i, (b"c1", data.draw(st.binary(max_size=12)), headers))
    elif kind == "remove":
        if n < 2:
            return
        records.pop(data.draw(st.integers(0, n - 2)))
    else:
        if n < 2:
            return
        i = data.draw(st.integers(0, n - 2))
        if records[i][:2] == records[i + 1][:2]:
            return  # the same record twice: nothing changes
        swap(records, i, i + 1)
    assert detected(check(records))


def test_a_restarted_worker_continues_from_the_last_seal() -> None:
    before = chained(RUNS[:2])
    after = AuditChain()
    after.seed(0, tail_of(before))
    c = check(before + chained(RUNS[2:], after))
    assert c.broken is None and c.outside == [] and c.runs == 3


def test_a_run_a_stopped_worker_left_unsealed_is_outside_and_the_chain_goes_on() -> None:
    """A worker stopped mid-run (its seal never written): the next one seeds from the last
    seal and writes the run again."""
    partial = chained([[b"d", b"e"]])[:1]  # the first record landed, not the seal
    records = chained(RUNS[:1])
    restarted = AuditChain()
    restarted.seed(0, tail_of(records))
    records += partial + chained(RUNS[1:], restarted)
    c = check(records)
    assert c.broken is None and c.outside == [3] and c.unsealed == []


def test_a_check_from_an_offset_starts_at_the_seal_before_it() -> None:
    records = chained(RUNS)
    c = PartitionCheck(0, tail_of(records[:3]))
    for offset, (key, value, headers) in enumerate(records[3:], start=3):
        c.feed(offset, key, value, headers)
    c.finish()
    assert c.broken is None and (c.checked, c.runs) == (5, 2)
    wrong = check(records[3:])  # from genesis the second run does not fit
    assert wrong.broken is not None and wrong.broken.reason == WRONG_LINK


def test_without_an_anchor_a_run_retention_cut_is_unprovable_and_the_rest_proven() -> None:
    records = chained(RUNS)[1:]  # what retention left: the first run lost its first record
    c = PartitionCheck(0, anchored=False)
    for offset, (key, value, headers) in enumerate(records, start=1):
        c.feed(offset, key, value, headers)
    c.finish()
    assert c.broken is None and c.unprovable == [1, 2] and c.runs == 3
    whole = chained(RUNS)[3:]  # retention cut at a run's start: its link is taken as it is
    assert check(whole, anchored=False).broken is None


def test_the_hash_keeps_keys_values_and_records_apart() -> None:
    def h(*records: tuple[bytes | None, bytes]) -> bytes:
        return run_hash(GENESIS, records)

    assert h((b"ab", b"c")) != h((b"a", b"bc"))
    assert h((None, b"x")) != h((b"", b"x"))
    assert h((b"k", b"vw")) != h((b"k", b"v"), (b"", b"w"))
    assert run_hash(GENESIS, [(b"k", b"v")]) != run_hash(bytes([1]) * 32, [(b"k", b"v")])


def test_a_batch_gets_one_seal_per_partition_on_its_last_audit_record() -> None:
    chain = AuditChain()
    chain.seed(0, GENESIS)
    chain.seed(1, b"\x01" * 32)
    outputs = [
        OutputRecord(AUDIT, b"a", b"1", 0),
        OutputRecord(AUDIT, b"b", b"2", 1),
        OutputRecord("approved", b"a", b"x", 0),
        OutputRecord(AUDIT, b"a", b"3", 0),
        OutputRecord("approved", b"b", b"y", 1),
    ]
    seals = chain.seal(outputs, AUDIT)
    assert sorted(seals) == [1, 3]
    assert seal_of(seals[3]) == Seal(2, GENESIS, run_hash(GENESIS, [(b"a", b"1"), (b"a", b"3")]))
    assert seal_of(seals[1]) == Seal(1, b"\x01" * 32, run_hash(b"\x01" * 32, [(b"b", b"2")]))
    [then] = chain.seal([OutputRecord(AUDIT, b"a", b"4", 0)], AUDIT).values()
    assert seal_of(then) == Seal(
        1, seal_of(seals[3]).hash, run_hash(seal_of(seals[3]).hash, [(b"a", b"4")])
    )  # type: ignore[union-attr]
    chain.forget([0])
    assert chain.unseeded([0, 1]) == {0}


def test_a_long_run_is_sealed_every_max_run_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_chain, "MAX_RUN", 3)
    records = chained([[bytes([i]) for i in range(7)]])
    assert [i for i, r in enumerate(records) if r[2]] == [2, 5, 6]
    c = check(records)
    assert c.broken is None and c.runs == 3
    # the check keeps at most MAX_RUN records waiting for their seal
    c = check([(b"-", FORGED, None)] * 4 + records)
    assert c.broken is None and c.outside == [0, 1, 2, 3]


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.one_of(st.none(), st.binary(max_size=4)), st.binary()),
        max_size=30,
    )
)
def test_a_batch_s_seals_hash_each_run_at_once_as_record_by_record(
    records: list[tuple[int, bytes | None, bytes]],
) -> None:
    chain = AuditChain()
    for p in range(3):
        chain.seed(p, bytes([p]) * 32)
    outputs = [OutputRecord(AUDIT, key, value, p) for p, key, value in records]
    seals = chain.seal(outputs, AUDIT)
    for p in range(3):
        run = [(o.key, o.value) for o in outputs if o.partition == p]
        if run:
            last = max(i for i, o in enumerate(outputs) if o.partition == p)
            assert seal_of(seals[last]) == Seal(
                len(run), bytes([p]) * 32, run_hash(bytes([p]) * 32, run)
            )
