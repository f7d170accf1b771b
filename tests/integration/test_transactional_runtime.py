"""The transactional runtime (`TOWER_RUNTIME=transactional`) on the real broker: the
end-to-end scenario, exactly-once through SIGKILLs, and hold windows."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import pytest

from pipeline.contracts.codec import encode_event
from pipeline.ops.simulator import AgentSimulator
from pipeline.runtime.transactional.changelog import changelog_topic
from tests.integration.test_hold_windows_e2e import HOLD_MS, POLICY, five
from tests.integration.test_pipeline_end_to_end import expected_decisions, outputs
from tests.kafka_io import consume_until, produce, read_visible

pytestmark = pytest.mark.integration


@pytest.fixture
def transactional(worker):
    worker.extra_env["TOWER_RUNTIME"] = "transactional"
    return worker


def test_two_sigkills_one_lost_data_dir_exactly_once(tower_settings, transactional):
    """Killed twice mid-backlog (the second time with its RocksDB deleted): every expected
    action is on the topic exactly once for a read_committed reader, and every valid input
    has exactly one audit record. At-least-once would re-emit the batch in flight."""
    # many small transactions, so that a kill lands in one (the adaptive commit interval
    # would otherwise take much of the backlog into one transaction)
    transactional.extra_env["TOWER_BATCH_SIZE"] = "50"
    transactional.extra_env["TOWER_TRANSACTION_MAX_RECORDS"] = "50"
    records = AgentSimulator(customers=30, seed=23).records(6000, malformed=10)
    valid = [r for r in records if r.event is not None]
    expected = {d.action_id for d in expected_decisions(records) if d.action_id}
    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in records]
    )
    transactional.start()
    for fraction, wipe in ((0.25, False), (0.6, True)):
        consume_until(
            tower_settings.bootstrap,
            outputs(tower_settings),
            lambda s, f=fraction: len(s["audit"]) >= f * len(valid),
            timeout=180,
            settle=0,
        )
        transactional.kill()
        visible = read_visible(tower_settings.bootstrap, outputs(tower_settings))
        assert len(visible["audit"]) < len(valid), "killed after the backlog was done"
        if wipe:  # local state gone: it must come back from the changelog
            shutil.rmtree(transactional.data_dir)
        transactional.start()
    seen = consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) >= len(valid),
        timeout=240,
        decided=tower_settings,
    )
    got = Counter(a.value["action_id"] for a in seen["approved"])
    assert set(got) == expected, transactional.log_tail()
    assert max(got.values()) == 1, "an action was published twice"
    audit_sources = Counter((a.partition, a.value["source_offset"]) for a in seen["audit"])
    assert len(audit_sources) == len(valid) and max(audit_sources.values()) == 1
    assert len(seen["deadletter"]) == 10


def test_held_proposals_come_out_once(tower_settings, transactional, tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    transactional.extra_env["TOWER_POLICY_FILE"] = str(policy_file)
    now = int(time.time() * 1000)
    one_window = five("cust-a", "cart", now)
    later = five("cust-b", "renewal", now + HOLD_MS + 500)
    events = one_window + later
    transactional.start()
    produce(
        tower_settings.bootstrap,
        tower_settings.topics.events,
        [(e.customer_id.encode(), encode_event(e, "avro")) for e in events],
    )
    seen = consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: sum(a.value["outcome"] != "held" for a in s["audit"]) >= len(events),
        timeout=120,
        settle=HOLD_MS / 1000 + 2,
    )
    approved = [a.value for a in seen["approved"]]
    assert Counter(a["customer_id"] for a in approved) == {"cust-a": 1, "cust-b": 1}
    winner = next(a for a in approved if a["customer_id"] == "cust-a")
    assert winner["agents"][0] == "care-bot"
    assert sorted(winner["source_event_ids"]) == sorted(e.event_id for e in one_window)
    outcomes = Counter((a.value["event_id"], a.value["outcome"] == "held") for a in seen["audit"])
    assert all(outcomes[(e.event_id, True)] == 1 for e in events)
    assert all(outcomes[(e.event_id, False)] == 1 for e in events)
    assert changelog_topic(tower_settings.app_id).endswith("-customer-state-changelog")


def test_a_batch_is_taken_as_soon_as_a_record_is_there(tower_settings):
    """`take_available` returns what is queued instead of waiting to fill the batch; plain
    `consume(1000, 30)` would sit out the 30 s for three records."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.runtime.transactional.polling import take_available

    topic = tower_settings.topics.events
    consumer = Consumer({"bootstrap.servers": tower_settings.bootstrap, "group.id": "take"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(tower_settings.partitions)])
    assert take_available(consumer, 1000, 0.2) == []  # nothing there: waits, then empty
    produce(tower_settings.bootstrap, topic, [(b"c%d" % i, b"{}") for i in range(3)])
    started = time.monotonic()
    got: list = []
    while len(got) < 3:
        got += take_available(consumer, 1000, 30)
    assert time.monotonic() - started < 15, "waited for the batch to fill"
    assert sorted(m.key() for m in got) == [b"c0", b"c1", b"c2"]
    consumer.close()
