"""Whether the Faust worker may keep its local table databases when it starts.

Faust writes a table's RocksDB database at once and its changelog record later (the
producer's buffer, then the broker's acknowledgement). After a crash the database can
hold writes the changelog never got, and Faust's recovery replays the changelog's tail
over it: some keys fall back to older values while others keep newer ones. The input
positions are keys of the same table, so a position could stay ahead of the customer
states it covers: the records in between would never be decided again, and a hold whose
wake-up lies behind the wake-ups position would never close.

So a worker that stops cleanly, with every changelog write acknowledged, leaves a marker.
A worker that finds no marker removes the databases, and Faust restores the table from
the changelog alone, which is a prefix of what the worker wrote, in order, per partition.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalState:
    tabledir: Path
    table: str

    @property
    def marker(self) -> Path:
        return self.tabledir / f"{self.table}.clean-stop"

    def databases(self) -> list[Path]:
        return sorted(self.tabledir.glob(f"{self.table}-*.db"))

    def open(self) -> list[Path]:
        """Before Faust opens the databases: consume the marker, or remove the databases
        if there is none. Returns the databases removed."""
        if self.marker.exists():
            self.marker.unlink()  # from here on, a crash leaves no marker
            _sync_dir(self.tabledir)
            return []
        removed = self.databases()
        for db in removed:
            shutil.rmtree(db)
        return removed

    def mark_clean_stop(self) -> None:
        """After the last table write, once the changelog has all of them."""
        self.tabledir.mkdir(parents=True, exist_ok=True)
        with open(self.marker, "wb") as f:
            os.fsync(f.fileno())
        _sync_dir(self.tabledir)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
