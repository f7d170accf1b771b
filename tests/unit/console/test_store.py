"""The read model keeps its rows and the offsets read in one transaction, in one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.console.store import Batch, Store, audit_row, collided_with, deadletter_row
from tests.unit.console.records import audit, dead_letter


def batch(start: int, n: int) -> Batch:
    b = Batch()
    for i in range(start, start + n):
        b.audit.append(audit_row(i % 2, i, audit(i)))
    b.deadletter.append(deadletter_row(0, start, dead_letter(start)))
    b.policies.append({"offset": start, "key": "active", "value": None, "written_at": 1})
    b.next_offsets = {
        ("audit", 0): start + n,
        ("audit", 1): start + n - 1,
        ("deadletter", 0): start + 1,
    }
    return b


def test_rows_and_offsets_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "console.duckdb"
    store = Store.open(path)
    store.add(batch(0, 100))
    store.add(batch(100, 50))
    store.close()
    again = Store.open(path)
    assert again.counts() == {"audit": 150, "deadletter": 2, "policies": 2}
    assert again.offsets() == {("audit", 0): 150, ("audit", 1): 149, ("deadletter", 0): 101}
    assert again.size_bytes() > 0


def test_a_failed_batch_leaves_neither_rows_nor_offsets(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "console.duckdb")
    store.add(batch(0, 10))
    bad = batch(10, 10)
    bad.audit[3]["offset"] = "not a number"
    with pytest.raises(Exception):  # noqa: B017 - whichever error pyarrow raises
        store.add(bad)
    assert store.counts()["audit"] == 10
    assert store.offsets()[("audit", 0)] == 10


def test_a_missing_file_is_a_new_empty_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "deep" / "console.duckdb")
    assert store.counts() == {"audit": 0, "deadletter": 0, "policies": 0}
    assert store.offsets() == {}


@pytest.mark.parametrize(
    ("rule", "reason", "other"),
    [
        (
            "offer_arbitration",
            "o1 (score 2) loses: active offer o0 by upsell-bot (score 3) scores higher",
            "upsell-bot",
        ),
        (
            "consistency_ledger",
            "price='9' contradicts '10' told by care-bot at 1767225600000",
            "care-bot",
        ),
        ("quiet_hours", "told by nobody at all", None),
        (None, "", None),
    ],
)
def test_who_a_stopped_proposal_collided_with(
    rule: str | None, reason: str, other: str | None
) -> None:
    assert collided_with(rule, reason) == other


def test_the_store_keeps_to_its_memory_limit(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "console.duckdb", "300MB")
    (limit,) = store.query("SELECT current_setting('memory_limit')")[0]
    assert limit.replace(" ", "") in ("286.1MiB", "300.0MB", "300MB")
    assert Store.open(None).query("SELECT current_setting('memory_limit')")[0][0].startswith("1.8")
