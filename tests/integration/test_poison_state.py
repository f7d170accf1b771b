"""Poison state on the real broker: one customer's changelog record is corrupted on purpose
and the worker restores from the changelog. That customer's events are dead-lettered with
reason `corrupt_state`; everyone else's keep flowing; the worker does not stop."""

from __future__ import annotations

import shutil

import pytest
from confluent_kafka import Producer

from pipeline.contracts.codec import encode_event
from pipeline.contracts.partitioning import JAVA_PARTITIONER, key_partition
from pipeline.runtime.transactional.changelog import changelog_topic
from tests.factories import T0, proposal, signal
from tests.integration.test_pipeline_end_to_end import outputs
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

CUSTOMERS = [f"poison-{i}" for i in range(8)]
VICTIM = CUSTOMERS[3]


def events(round_: int) -> list:
    out = []
    for i, c in enumerate(CUSTOMERS):
        at = T0 + round_ * 100_000 + i
        out.append(signal("profile_updated", c, at, event_id=f"{c}-s{round_}", city="Oslo"))
        out.append(
            proposal(c, at + 1, event_id=f"{c}-p{round_}", category="service", channel="chat")
        )
    return out


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_a_corrupt_changelog_record_dead_letters_one_customer_only(tower_settings, worker, runtime):
    s = tower_settings
    worker.extra_env["TOWER_RUNTIME"] = runtime
    first = events(0)
    produce(
        s.bootstrap, s.topics.events, [(e.customer_id.encode(), encode_event(e)) for e in first]
    )
    worker.start()
    consume_until(s.bootstrap, outputs(s), lambda g: len(g["audit"]) >= len(first), 180, decided=s)
    worker.stop()

    # a damaged record for the victim on the changelog, and a restore from it
    partition = key_partition(VICTIM.encode(), s.partitions)
    producer = Producer({"bootstrap.servers": s.bootstrap, **JAVA_PARTITIONER})
    producer.produce(
        changelog_topic(s.app_id), key=VICTIM.encode(), value=b"\x00" * 8 + b"{not json",
        partition=partition,
    )  # fmt: skip
    assert producer.flush(30) == 0
    shutil.rmtree(worker.data_dir, ignore_errors=True)

    second = events(1)
    produce(
        s.bootstrap, s.topics.events, [(e.customer_id.encode(), encode_event(e)) for e in second]
    )
    worker.start()
    expected = len(first) + len(second) - 2  # the victim's two events of round 1
    seen = consume_until(
        s.bootstrap,
        outputs(s),
        lambda g: len(g["audit"]) >= expected and len(g["deadletter"]) >= 2,
        240,
        decided=s,
    )
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    dead = [d.value for d in seen["deadletter"]]
    assert {d["reason"] for d in dead} == {"corrupt_state"}, dead
    assert {d["raw_key"] for d in dead} == {VICTIM.encode()}
    later = {a.value["customer_id"] for a in seen["audit"] if a.value["event_id"].endswith("1")}
    assert later == set(CUSTOMERS) - {VICTIM}
    assert 'tower_dead_letters_total{reason="corrupt_state"}' in worker.metrics_text()
