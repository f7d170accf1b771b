"""The state table, restored by the shared bulk restore before Faust's recovery reads it.

Faust's recovery hands every changelog record through its consumer thread, the conductor
and a queue to one coroutine, an event-loop turn or more each. The shared restore
(`kafka/changelog_restore.py`) reads the same records in batches with a consumer of its
own and writes them, with the offset Faust's recovery starts from, into the partition
databases Faust has just opened. Faust's recovery then has only what was written since.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
from faust.types import TP

from pipeline.kafka.changelog_restore import RestorableDB, changelog_batch
from pipeline.runtime.faust import compat as faust_compat

log = logging.getLogger(__name__)

#: (changelog topic, {partition: database}): the restore a RestoringTable runs
Restore = Callable[[str, Mapping[int, RestorableDB]], object]


class FaustPartitionDB:
    """One partition database of Faust's RocksDB store. Faust persists the offset of the
    last record applied; the restore's checkpoint is the next offset to read. The records
    and the offset go into one WriteBatch, so a crash leaves them consistent."""

    def __init__(self, store: Any, partition: int) -> None:
        self.store, self.partition = store, partition

    def _db(self) -> Any:
        return faust_compat.partition_database(self.store, self.partition)

    def checkpoint(self) -> int | None:
        raw = self._db().get(self.store.offset_key)
        return None if raw is None else int(raw) + 1

    def apply(self, items: Iterable[tuple[bytes, bytes | None]], next_offset: int | None) -> int:
        checkpoint = None
        if next_offset is not None:  # Faust's offset is that of the last record applied
            checkpoint = (self.store.offset_key, str(next_offset - 1).encode())
        batch, n = changelog_batch(items, checkpoint)
        self._db().write(batch)
        return n


class RestoringTable(faust.Table):
    """A Faust table whose newly assigned partitions `restore` brings up to date first.

    What a restore leaves (stopped at its budget, or failed and logged) Faust's recovery
    reads on from the offset the restore got to: each batch was written with its offset.
    """

    restore: Restore | None = None

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.restore is None or generation_id != self.app.consumer_generation_id:
            return
        topic = self.changelog_topic_name
        standbys = self.app.assignor.assigned_standbys()
        dbs = {
            tp.partition: FaustPartitionDB(self.data, tp.partition)
            for tp in newly_assigned
            if tp.topic == topic and tp not in standbys
        }
        if not dbs:
            return
        try:
            await asyncio.to_thread(self.restore, topic, dbs)
        except Exception as exc:  # the broker, mostly; Faust's recovery reads the rest
            log.warning("bulk restore of %s stopped (%s); Faust's recovery reads on", topic, exc)
