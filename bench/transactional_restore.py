"""Restore speed of the transactional runtime: keys/s from the changelog into fresh RocksDB.

Writes `--customers` states to a changelog topic the way the engine does (transactions of
`--per-txn` records, so the log holds commit markers too), with values taken from real
customer states (the simulator's events decided by `BatchProcessor`), then restores every
partition into empty databases with `pipeline.kafka.changelog_restore.restore_partitions`.

    python -m bench.transactional_restore --customers 200000
"""

from __future__ import annotations

import itertools
import tempfile
import time
import uuid
from pathlib import Path

import click
from confluent_kafka import Producer

from bench.common import create_plain_topics, start_broker
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.kafka.changelog_restore import restore_partitions
from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.runtime.transactional.state_store import PartitionDB
from pipeline.settings import Settings


def sample_states(customers: int = 2_000, events: int = 20_000) -> list[bytes]:
    """Stored values of real customer states after some traffic."""
    store = DictStateStore()
    processor = BatchProcessor(Settings(), policy=lambda: DEFAULT_POLICY)
    records = AgentSimulator(customers=customers, seed=7).records(events)
    inputs = [InputRecord(r.key, r.value, 0, i, None) for i, r in enumerate(records)]
    for i in range(0, len(inputs), 500):
        processor.process_and_save(inputs[i : i + 500], store)
    return list(store.data.values())


@click.command()
@click.option("--customers", default=200_000, show_default=True)
@click.option("--partitions", default=8, show_default=True)
@click.option("--per-txn", default=500, show_default=True, help="Records per transaction.")
@click.option("--bootstrap", envvar="TOWER_BOOTSTRAP", help="Use this broker.")
@click.option("--kafka-port", default=39592, show_default=True)
def main(customers: int, partitions: int, per_txn: int, bootstrap: str | None, kafka_port: int):
    """Write a changelog of --customers states, restore it, print keys/s."""
    work = Path(tempfile.mkdtemp(prefix="tower-restore-"))
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    try:
        values = sample_states()
        sizes = sorted(len(v) for v in values)
        click.echo(f"{len(values)} sample states, median {sizes[len(sizes) // 2]} bytes")
        topic = f"bench-restore-{uuid.uuid4().hex[:6]}-changelog"
        create_plain_topics(bootstrap, [topic], partitions)
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": f"bench-restore-{uuid.uuid4().hex[:6]}",
                "linger.ms": 20,
                "batch.size": 1_000_000,
            }
        )
        producer.init_transactions(30)
        started = time.perf_counter()
        cycle = itertools.cycle(values)
        for first in range(0, customers, per_txn):
            producer.begin_transaction()
            for i in range(first, min(customers, first + per_txn)):
                while True:
                    try:
                        producer.produce(
                            topic, next(cycle), f"customer-{i}".encode(), i % partitions
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.commit_transaction(60)
        click.echo(f"wrote {customers} states in {time.perf_counter() - started:.1f}s")
        dbs = {p: PartitionDB(work / "db" / str(p)) for p in range(partitions)}
        stats = restore_partitions(Settings(bootstrap=bootstrap), topic, dbs)
        assert all(db.checkpoint() is not None for db in dbs.values())
        # every key but the checkpoint, counted on disk
        got = sum(1 for db in dbs.values() for _ in db.db.keys(from_key=b"")) - partitions
        for db in dbs.values():
            db.close()
        click.echo(
            f"restored {stats.keys} keys ({got} distinct in RocksDB) from {partitions} "
            f"partitions in {stats.seconds:.2f}s: {stats.keys_per_s:,.0f} keys/s"
        )
    finally:
        if broker is not None:
            broker.down()


if __name__ == "__main__":
    main()
