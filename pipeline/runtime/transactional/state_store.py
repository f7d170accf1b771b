"""Customer states on local disk: one RocksDB per assigned partition, plus the changelog
offset the database is complete up to (its checkpoint), written in the same WriteBatch.

The local store is a cache of the changelog: it is written only after the transaction that
produced the same records to the changelog committed. If the process dies in between, the
checkpoint is behind and the next restore reads those records back from the changelog.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

from pipeline.kafka.changelog_restore import changelog_batch

#: Never a customer id (ids are text); holds the next changelog offset to read on restore.
CHECKPOINT_KEY = b"\x00tower:changelog-offset"
#: Per partition database, as on the Faust runtime: a larger cache fills for minutes as the
#: states grow (RSS that looks like a leak), and reads that miss it hit the page cache.
BLOCK_CACHE_BYTES = 4 * 1024 * 1024
#: Small memtables fill in seconds, so the worker's RSS levels off early instead of
#: growing for minutes while larger ones fill (a memtable holds every version written).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(2)
    return opts


class PartitionDB:
    """One partition's states; `apply` writes values and the checkpoint atomically."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), _options())

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def checkpoint(self) -> int | None:
        raw = self.db.get(CHECKPOINT_KEY)
        return int(raw) if raw is not None else None

    def apply(self, items: Iterable[tuple[bytes, bytes | None]], next_offset: int | None) -> int:
        """Write (key, value) pairs (None deletes) and, if given, the new checkpoint."""
        checkpoint = None if next_offset is None else (CHECKPOINT_KEY, str(next_offset).encode())
        batch, n = changelog_batch(items, checkpoint)
        self.db.write(batch)
        return n

    def close(self) -> None:
        self.db.close()


#: The folder of the partition databases under the data dir. It keeps the runtime's earlier
#: name: a worker finds the state an earlier version persisted there instead of restoring it
#: from the changelog.
STATE_DIR = "native"


class LocalStores:
    """The open partition databases under `<data_dir>/native/<partition>`.

    The engine's thread opens, closes and writes them; `read` is for other threads (the
    web server) and never meets a database being closed."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / STATE_DIR
        self.dbs: dict[int, PartitionDB] = {}
        self._closing = threading.Lock()

    def open(self, partition: int) -> PartitionDB:
        db = self.dbs.get(partition)
        if db is None:
            db = self.dbs[partition] = PartitionDB(self.root / str(partition))
        return db

    def close(self, partition: int) -> None:
        with self._closing:
            db = self.dbs.pop(partition, None)
            if db is not None:
                db.close()

    def close_all(self) -> None:
        for p in list(self.dbs):
            self.close(p)

    def load(self, partition: int, key: bytes) -> bytes | None:
        return self.dbs[partition].get(key)

    def read(self, partition: int, key: bytes) -> bytes | None:
        """`load` from another thread; None if the partition is not open here."""
        with self._closing:
            db = self.dbs.get(partition)
            return None if db is None else db.get(key)


class OverlayStore:
    """The `StateStore` a transaction sees: its own writes first, then the local databases.

    Nothing reaches disk until `commit_to`; an aborted transaction just drops the overlay.
    """

    def __init__(self, base: LocalStores, under: OverlayStore | None = None) -> None:
        self.base = base
        #: the transaction in flight: written to the log, not yet to the databases
        self.under = under
        self.writes: dict[tuple[int, bytes], bytes] = {}

    def load(self, partition: int, key: bytes) -> bytes | None:
        value = self.writes.get((partition, key))
        if value is None and self.under is not None:
            value = self.under.writes.get((partition, key))
        return value if value is not None else self.base.load(partition, key)

    def save(self, partition: int, key: bytes, value: bytes) -> None:
        self.writes[(partition, key)] = value

    def commit_to(self, checkpoints: Mapping[int, int]) -> None:
        """Apply the committed writes, each partition with its new changelog checkpoint."""
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for (partition, key), value in self.writes.items():
            by_partition.setdefault(partition, []).append((key, value))
        for partition, items in by_partition.items():
            db = self.base.dbs.get(partition)
            if db is not None:  # revoked meanwhile: the next owner restores from the log
                db.apply(items, checkpoints.get(partition))
