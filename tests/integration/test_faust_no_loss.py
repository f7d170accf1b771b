"""No decision lost on the Faust runtime across a restart (the reproduction test).

tests/faults/faust_worker.py forces the interleaving in which faust-streaming loses
records around a recovery (queued records cleared, a stale fetch taken for a gap, the
re-fetch dropped below the read offset; docs/faust-offsets.md). On the code before the
worker owned its input offsets this lost records in every run; now every record is
decided exactly as the pure core decides it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.input_positions import pack_position, position_key, unpack_position
from pipeline.runtime.faust.app import STATE_TABLE
from tests.integration.scenarios import final_sources
from tests.integration.test_pipeline_end_to_end import expected_decisions, outputs
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration


def decided_or_explained(settings, worker, done, timeout, extra=lambda: ""):
    """The outputs once `done` holds; on a timeout, a failure with the worker's exit status,
    `extra()` and the worker's log."""
    try:
        return consume_until(
            settings.bootstrap, outputs(settings), done, timeout=timeout, decided=settings
        )
    except TimeoutError as exc:
        status = worker.proc.poll() if worker.proc else None
        raise AssertionError(
            f"records never decided: {exc}\nworker exit status: {status}\n{extra()}\n"
            f"worker log:\n{worker.log_tail(60)}"
        ) from None


def test_restart_through_the_recovery_race_loses_no_record(tower_settings, worker, tmp_path):
    fault_log = tmp_path / "faults.log"
    records = AgentSimulator(customers=60, seed=53).records(12_000, malformed=0)
    expected = expected_decisions(records)
    assert Counter(d.outcome for d in expected)["duplicate"] > 50  # replays at new offsets
    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in records]
    )

    def sources(seen):
        return {(a.partition, a.value["source_offset"]) for a in seen["audit"]}

    worker.start()
    consume_until(
        tower_settings.bootstrap,
        {"audit": tower_settings.topics.audit},
        lambda s: len(s["audit"]) >= 3_000,
        timeout=120,
        settle=0,
    )
    worker.kill()  # mid-backlog; the restart recovers through the forced race
    worker.module = "tests.faults.faust_worker"
    worker.extra_env.update(TOWER_FAULT_STALE_FETCH="1", TOWER_FAULT_LOG=str(fault_log))
    worker.start()
    seen = decided_or_explained(
        tower_settings,
        worker,
        lambda s: len(sources(s)) >= len(records),
        90,
        lambda: fault_log.read_text() if fault_log.exists() else "(no fault log)",
    )
    assert "stale fetch" in fault_log.read_text(), "the fault was not injected"
    assert len(sources(seen)) == len(records)
    assert {a.value["action_id"] for a in seen["approved"]} == {
        d.action_id for d in expected if d.action_id
    }


def test_decided_positions_are_mirrored_to_the_consumer_group(tower_settings, worker):
    """Faust never commits the input topics; the worker commits what it stored, so
    `kafka-consumer-groups --describe` and lag monitors show the truth."""
    from confluent_kafka import Consumer, TopicPartition

    records = AgentSimulator(customers=20, seed=5).records(500, malformed=5)
    topic = tower_settings.topics.events
    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in records])
    worker.start()
    consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) + len(s["deadletter"]) >= len(records),
        timeout=120,
        settle=0,
    )
    group = Consumer(
        {"bootstrap.servers": tower_settings.bootstrap, "group.id": tower_settings.app_id}
    )
    tps = [TopicPartition(topic, p) for p in range(tower_settings.partitions)]
    ends = {tp.partition: group.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    deadline = time.monotonic() + 30
    try:
        while True:
            committed = {tp.partition: tp.offset for tp in group.committed(tps, timeout=10)}
            if committed == ends or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        group.close()
    assert committed == ends


def test_a_crash_never_leaves_a_table_write_the_changelog_lacks(tower_settings, worker):
    """Faust writes the table's RocksDB at once and the changelog later, so after a crash
    the database can hold writes the changelog never got; the recovery then replays the
    changelog's tail over it, and a stored input position can end up ahead of the states
    it covers (docs/faust-offsets.md). A write of a position far ahead, put into the
    database while the worker is down, stands for such a write: a worker that trusted its
    database would never decide the records it skips."""
    from rocksdict import Options, Rdict

    records = AgentSimulator(customers=40, seed=61).records(3_000, malformed=0)
    thirds = [records[i * 1000 : (i + 1) * 1000] for i in range(3)]
    topic = tower_settings.topics.events
    tabledir = worker.data_dir / "v1" / "tables"
    marker = tabledir / f"{STATE_TABLE}.clean-stop"

    def decide(part_end: int) -> None:
        consume_until(
            tower_settings.bootstrap,
            outputs(tower_settings),
            lambda s: len(final_sources(s)) >= part_end,
            timeout=120,
            settle=0,
        )

    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in thirds[0]])
    worker.start()
    decide(1000)
    worker.stop()  # a clean stop: every table write is on the changelog
    assert marker.exists()

    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in thirds[1]])
    worker.start()
    decide(2000)
    assert not marker.exists()  # consumed at the start
    assert "did not stop cleanly" not in worker.log_tail(400)
    worker.kill()

    db = Rdict(str(tabledir / f"{STATE_TABLE}-0.db"), Options(raw_mode=True))
    try:
        position = unpack_position(db.get(position_key(topic)))
        assert position is not None
        db.put(position_key(topic), pack_position(position + 200))
    finally:
        db.close()

    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in thirds[2]])
    worker.start()
    seen = decided_or_explained(
        tower_settings, worker, lambda s: len(final_sources(s)) >= len(records), 120
    )
    assert "did not stop cleanly" in worker.log_tail(400)
    assert {a.value["action_id"] for a in seen["approved"]} == {
        d.action_id for d in expected_decisions(records) if d.action_id
    }


def test_after_a_crash_the_table_is_restored_in_bulk_before_faust_recovery(tower_settings, worker):
    """A crashed worker's databases are removed (`local_state.py`), so the restart restores
    the whole table. The shared bulk restore reads the changelog before Faust's recovery,
    which then has nothing left; the decisions after it need the restored states (replays,
    caps, merges)."""
    from confluent_kafka import Consumer, TopicPartition

    records = AgentSimulator(customers=50, seed=71).records(2_000, malformed=0)
    first, rest = records[:1_500], records[1_500:]
    topic = tower_settings.topics.events
    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in first])
    worker.start()
    decided_or_explained(tower_settings, worker, lambda s: len(final_sources(s)) >= 1_500, 120)
    worker.kill()

    changelog = f"{tower_settings.app_id}-{STATE_TABLE}-changelog"
    reader = Consumer({"bootstrap.servers": tower_settings.bootstrap, "group.id": "t"})
    try:
        ends = [
            reader.get_watermark_offsets(TopicPartition(changelog, p), timeout=10)
            for p in range(tower_settings.partitions)
        ]
    finally:
        reader.close()
    written = sum(high - low for low, high in ends)

    produce(tower_settings.bootstrap, topic, [(r.key, r.value) for r in rest])
    worker.loglevel = "info"
    worker.start()
    seen = decided_or_explained(
        tower_settings, worker, lambda s: len(final_sources(s)) >= len(records), 120
    )
    log = (worker.log_dir / f"worker-{worker.starts}.log").read_text(errors="replace")
    assert "did not stop cleanly" in log
    assert f"restored {written} keys into {tower_settings.partitions} partition(s)" in log
    assert "Restoring state from changelog topics" not in log  # Faust's recovery had none
    assert {a.value["action_id"] for a in seen["approved"]} == {
        d.action_id for d in expected_decisions(records) if d.action_id
    }
