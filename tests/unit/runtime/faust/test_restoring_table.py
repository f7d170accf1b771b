"""The Faust table's bulk restore without a broker: the offsets Faust's recovery starts
from, and which partitions a rebalance restores."""

from __future__ import annotations

import asyncio

import faust
from faust.stores.rocksdb import Store
from faust.types import TP
from rocksdict import Options, Rdict

from pipeline.kafka.changelog_restore import restore
from pipeline.runtime.faust.restoring_table import FaustPartitionDB, RestoringTable
from tests.unit.kafka.test_changelog_restore import FakeConsumer


class PartitionStore:
    """What FaustPartitionDB uses of Faust's RocksDB store, over real databases."""

    offset_key = Store.offset_key

    def __init__(self, tmp_path) -> None:
        self.tmp_path, self.dbs = tmp_path, {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.tmp_path / str(partition)), Options(raw_mode=True))
        return self.dbs[partition]


def test_the_restore_leaves_the_offset_faust_recovery_reads_on_from(tmp_path):
    logs = {0: [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None)], 1: [(b"x", b"1")]}
    store = PartitionStore(tmp_path)
    dbs = {p: FaustPartitionDB(store, p) for p in logs}
    assert dbs[0].checkpoint() is None

    stats = restore(FakeConsumer(logs, batch=3), "changelog", dbs)
    assert stats.keys == 5
    assert store.dbs[0].get(b"a") == b"2" and store.dbs[0].get(b"b") is None
    # Faust's own reading: the offset of the last record applied
    assert Store.persisted_offset(store, TP("changelog", 0)) == 3
    assert Store.persisted_offset(store, TP("changelog", 1)) == 0

    logs[0].append((b"c", b"1"))
    again = restore(FakeConsumer(logs, batch=3), "changelog", dbs)
    assert again.keys == 1 and Store.persisted_offset(store, TP("changelog", 0)) == 4
    for db in store.dbs.values():
        db.close()


def test_a_rebalance_restores_the_newly_assigned_changelog_partitions_only():
    app = faust.App("restoring-table-test", store="memory://", Table=RestoringTable)
    table = app.Table("states", partitions=4)
    assert isinstance(table, RestoringTable)
    calls = []
    table.restore = lambda topic, dbs: calls.append((topic, sorted(dbs)))
    changelog = table.changelog_topic_name
    assigned = {TP(changelog, 0), TP(changelog, 2), TP("agent-events", 1)}
    newly = {TP(changelog, 2), TP("agent-events", 1)}

    asyncio.run(table.on_rebalance(assigned, set(), newly, app.consumer_generation_id))
    assert calls == [(changelog, [2])]

    asyncio.run(table.on_rebalance(assigned, set(), set(), app.consumer_generation_id))
    asyncio.run(table.on_rebalance(assigned, set(), newly, app.consumer_generation_id + 1))
    assert len(calls) == 1  # nothing new; a newer rebalance already under way


def test_a_failed_restore_leaves_the_rest_to_faust_recovery():
    app = faust.App("restoring-table-fails", store="memory://", Table=RestoringTable)
    table = app.Table("states", partitions=2)

    def broker_down(topic, dbs):
        raise RuntimeError("no broker")

    table.restore = broker_down
    tp = TP(table.changelog_topic_name, 1)
    asyncio.run(table.on_rebalance({tp}, set(), {tp}, app.consumer_generation_id))  # no raise
