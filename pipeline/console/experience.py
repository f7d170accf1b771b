"""The overview's experience metrics: the read model's audit rows fed, in insertion order
(topic order per partition), to the core's `ExperienceTrends`, a few at a time.

A feed keeps its ledger in memory and reads only the rows added since its last read (by
DuckDB's rowid, which grows with each append). After a restart it starts again from the
rows of the ledger's horizon plus the longest experience window, so the journeys the
metrics need (an open conversation, the last resolution) are rebuilt before the window
shown.
"""

from __future__ import annotations

import threading
import time

from pipeline.console.store import Store
from pipeline.core import experience_trends as xt
from pipeline.core.experience import DEFAULT_EXPERIENCE

_COLUMNS = (
    "customer_id",
    "kind",
    "outcome",
    "rule",
    "input",
    "processed_at",
    "decided_at",
    "decision_id",
    "action_id",
    "policy_version",
)
#: rows before the ledger's horizon read again after a restart (journeys need their past)
CONTEXT_MS = max(
    DEFAULT_EXPERIENCE.repeat_window_ms,
    DEFAULT_EXPERIENCE.conversion_window_ms,
    DEFAULT_EXPERIENCE.churn_window_ms,
    DEFAULT_EXPERIENCE.csat_window_ms,
)
FETCH_ROWS = 20_000
#: rows replayed under the lock at a time (an overview waits at most that long)
LOCKED_ROWS = 1_000


class ExperienceFeed:
    """One ledger fed from the store; `catch_up` in a worker thread, `read` from any."""

    def __init__(self, store: Store, trends: xt.ExperienceTrends | None = None) -> None:
        self.store = store
        self.trends = trends or xt.ExperienceTrends()
        self.lock = threading.Lock()
        self._next_rowid: int | None = None
        #: set after the first catch-up (until then the overview says it is computing)
        self.ready = False

    def catch_up(self, now: int | None = None) -> int:
        """Feed the rows added since the last call; how many were fed."""
        now = int(time.time() * 1000) if now is None else now
        # no ORDER BY: a sort would hold every row in memory before the first one comes
        # back; a plain scan streams them, in insertion order (`Store.open` keeps DuckDB's
        # preserve_insertion_order on)
        cursor = self.store.db.cursor()
        columns = ", ".join(f'"{c}"' for c in _COLUMNS)
        top = None
        if self._next_rowid is None:
            top = self.store.query("SELECT coalesce(max(rowid) + 1, 0) FROM audit")[0][0]
            since = now - self.trends.keep_ms - CONTEXT_MS
            cursor.execute(
                f"SELECT rowid, {columns} FROM audit WHERE processed_at >= ?",
                [since],
            )
        else:
            cursor.execute(
                f"SELECT rowid, {columns} FROM audit WHERE rowid >= ?",
                [self._next_rowid],
            )
        fed = 0
        while rows := cursor.fetchmany(FETCH_ROWS):
            for i in range(0, len(rows), LOCKED_ROWS):  # pages read between the slices
                with self.lock:
                    for row in rows[i : i + LOCKED_ROWS]:
                        self.trends.add(dict(zip(_COLUMNS, row[1:], strict=True)))
            fed += len(rows)
            self._next_rowid = int(rows[-1][0]) + 1
        if self._next_rowid is None:  # no row in the horizon: start after the rows there were
            self._next_rowid = int(top or 0)
        self.ready = True
        return fed

    @property
    def position(self) -> int | None:
        """The next row the feed reads (None before its first catch-up): an answer built
        from the metrics is stale once this moves."""
        return self._next_rowid if self.ready else None
