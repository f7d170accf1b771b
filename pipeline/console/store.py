"""The console's read model: the `audit`, `deadletter` and `policies` topics as tables of
one DuckDB file, and the offsets read so far, stored in the same transaction as the rows.

Why DuckDB: the pages are aggregates (decisions per minute by outcome, stops by rule and
agent, exposures per arm) over millions of audit records; a columnar database answers them
with SQL in milliseconds, embedded in the console's process, in one file to back up or
delete. Rows arrive as Arrow batches: one INSERT per batch of thousands of records.

The file is a cache of the topics: delete it and the console reads them again from their
first offsets (`Store.open` makes the tables; no offsets means from the beginning).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

#: DuckDB's memory for the read model (TOWER_CONSOLE_DB_MEMORY)
DEFAULT_MEMORY = "2GB"
AUDIT = "audit"
DEADLETTER = "deadletter"
POLICIES = "policies"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (
    topic VARCHAR, partition INTEGER, next_offset BIGINT, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS audit (
    partition INTEGER, "offset" BIGINT,
    decision_id VARCHAR, event_id VARCHAR, customer_id VARCHAR, kind VARCHAR,
    agent VARCHAR, department VARCHAR, channel VARCHAR, "trigger" VARCHAR,
    outcome VARCHAR, rule VARCHAR, reason VARCHAR, policy_version VARCHAR,
    action_id VARCHAR, merged_into VARCHAR, decided_at BIGINT, processed_at BIGINT,
    experiments VARCHAR, input VARCHAR, collided_with VARCHAR, signal_type VARCHAR,
    score DOUBLE);
CREATE TABLE IF NOT EXISTS deadletter (
    partition INTEGER, "offset" BIGINT, reason VARCHAR, detail VARCHAR,
    raw_key BLOB, raw_value BLOB, source_topic VARCHAR, source_partition INTEGER,
    source_offset BIGINT, dead_lettered_at BIGINT);
CREATE TABLE IF NOT EXISTS policies (
    "offset" BIGINT, "key" VARCHAR, value VARCHAR, written_at BIGINT);
"""

AUDIT_COLUMNS = (
    "partition",
    "offset",
    "decision_id",
    "event_id",
    "customer_id",
    "kind",
    "agent",
    "department",
    "channel",
    "trigger",
    "outcome",
    "rule",
    "reason",
    "policy_version",
    "action_id",
    "merged_into",
    "decided_at",
    "processed_at",
    "experiments",
    "input",
    "collided_with",
    "signal_type",
    "score",
)
_AUDIT_TYPES = {
    "partition": pa.int32(),
    "offset": pa.int64(),
    "decided_at": pa.int64(),
    "processed_at": pa.int64(),
    "score": pa.float64(),
}
DEADLETTER_COLUMNS = (
    "partition",
    "offset",
    "reason",
    "detail",
    "raw_key",
    "raw_value",
    "source_topic",
    "source_partition",
    "source_offset",
    "dead_lettered_at",
)
_DEADLETTER_TYPES = {
    "partition": pa.int32(),
    "offset": pa.int64(),
    "raw_key": pa.binary(),
    "raw_value": pa.binary(),
    "source_partition": pa.int32(),
    "source_offset": pa.int64(),
    "dead_lettered_at": pa.int64(),
}
POLICY_COLUMNS = ("offset", "key", "value", "written_at")
_POLICY_TYPES = {"offset": pa.int64(), "written_at": pa.int64()}

#: who a stopped proposal collided with, as the rules name them in their reasons
_COLLISION = (
    ("offer_arbitration", re.compile(r" by (\S+) \(score")),
    ("consistency_ledger", re.compile(r" told by (\S+) at ")),
)


def collided_with(rule: str | None, reason: str) -> str | None:
    """The other agent a rule's reason names (offer arbitration, consistency ledger)."""
    for name, pattern in _COLLISION:
        if rule == name:
            found = pattern.search(reason)
            return found.group(1) if found else None
    return None


def audit_row(partition: int, offset: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """One decoded audit record as a row of the `audit` table."""
    arms = record.get("experiments") or []
    reason = str(record.get("reason") or "")
    return {
        "partition": partition,
        "offset": offset,
        **{name: record.get(name) for name in AUDIT_COLUMNS[2:16]},
        "decided_at": record.get("decided_at"),
        "processed_at": record.get("processed_at"),
        "experiments": orjson.dumps(arms).decode() if arms else None,
        "input": record.get("input"),
        "collided_with": collided_with(record.get("rule"), reason),
        **_signal(record),
    }


def _signal(record: Mapping[str, Any]) -> dict[str, Any]:
    """A signal's type and score (csat, sentiment), kept as columns for the overview."""
    if record.get("kind") != "signal":
        return {"signal_type": None, "score": None}
    try:
        signal = orjson.loads(record.get("input") or "{}").get("signal") or {}
        kind = signal.get("type")
        score = (signal.get("attributes") or {}).get("score")
        value = float(score) if score is not None else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {"signal_type": None, "score": None}
    if value is not None and not math.isfinite(value):
        value = None
    return {"signal_type": kind if isinstance(kind, str) else None, "score": value}


def deadletter_row(partition: int, offset: int, record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "partition": partition,
        "offset": offset,
        **{c: record.get(c) for c in DEADLETTER_COLUMNS[2:]},
    }


@dataclass
class Batch:
    """Rows read from the topics, and the next offset of each (topic kind, partition)."""

    audit: list[dict[str, Any]] = field(default_factory=list)
    deadletter: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    #: audit rows already as Arrow tables (decoded in other processes: `audit_table`)
    audit_tables: list[pa.Table] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        tables = sum(t.num_rows for t in self.audit_tables)
        return len(self.audit) + len(self.deadletter) + len(self.policies) + tables


def audit_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return _table(rows, AUDIT_COLUMNS, _AUDIT_TYPES)


def _table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], types: Mapping[str, Any]
) -> pa.Table:
    arrays = [pa.array([r.get(c) for r in rows], type=types.get(c, pa.string())) for c in columns]
    return pa.Table.from_arrays(arrays, names=list(columns))


class Store:
    """One DuckDB file; a writer (the ingest thread) and any number of readers (cursors)."""

    def __init__(self, db: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.db = db
        self.path = path
        self._write = threading.Lock()
        #: grows with every committed batch: cached answers older than it are stale
        self.generation = 0

    @classmethod
    def open(cls, path: Path | None, memory_limit: str = DEFAULT_MEMORY) -> Store:
        """The store at `path` (made with its tables if missing); None: in memory.

        DuckDB's own default takes 80 % of the machine's memory for its buffers; the
        console shares its host, so it gets `memory_limit` and spills past it to disk."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        db = duckdb.connect(":memory:" if path is None else str(path))
        db.execute("SET memory_limit = ?", [memory_limit])
        db.execute("SET preserve_insertion_order = true")  # scans stream in topic order
        db.execute(_SCHEMA)
        return cls(db, path)

    def close(self) -> None:
        self.db.close()

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = (
            self.db.cursor().execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        )
        return {(t, p): o for t, p, o in rows}

    def add(self, batch: Batch) -> None:
        """The batch's rows and offsets in one transaction: a crash keeps both or neither."""
        if not batch.next_offsets:
            return
        offsets = _table(
            [
                {"topic": t, "partition": p, "next_offset": o}
                for (t, p), o in batch.next_offsets.items()
            ],
            ("topic", "partition", "next_offset"),
            {"partition": pa.int32(), "next_offset": pa.int64()},
        )
        with self._write:
            cur = self.db.cursor()
            cur.execute("BEGIN")
            try:
                for name, rows, columns, types in (
                    (AUDIT, batch.audit, AUDIT_COLUMNS, _AUDIT_TYPES),
                    (DEADLETTER, batch.deadletter, DEADLETTER_COLUMNS, _DEADLETTER_TYPES),
                    (POLICIES, batch.policies, POLICY_COLUMNS, _POLICY_TYPES),
                ):
                    if rows:
                        cur.register("incoming", _table(rows, columns, types))
                        cur.execute(f"INSERT INTO {name} SELECT * FROM incoming")
                        cur.unregister("incoming")
                for table in batch.audit_tables:
                    cur.register("incoming", table)
                    cur.execute(f"INSERT INTO {AUDIT} SELECT * FROM incoming")
                    cur.unregister("incoming")
                cur.register("incoming", offsets)
                cur.execute("INSERT OR REPLACE INTO offsets SELECT * FROM incoming")
                cur.unregister("incoming")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self.generation += 1

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, from a cursor of its own (any thread)."""
        return self.db.cursor().execute(sql, list(params)).fetchall()

    def counts(self) -> dict[str, int]:
        return {
            name: int(self.query(f"SELECT count(*) FROM {name}")[0][0])
            for name in (AUDIT, DEADLETTER, POLICIES)
        }

    def size_bytes(self) -> int:
        return 0 if self.path is None or not self.path.exists() else self.path.stat().st_size
