"""Replay on the real broker: a 10,000-event run replays 100% matched, and one forged audit
record is caught; `tower audit` and `tower explain` read the same topics."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Producer

from pipeline.contracts.codec import encode_record
from pipeline.core.replay import MATCH, catalog, replay_all
from pipeline.ops.cli import main
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

TOTAL, MALFORMED = 10_000, 100


def tower(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=settings.to_env())


def test_recorded_run_replays_exactly_and_a_forgery_is_caught(tower_settings, worker):
    s = tower_settings
    records = AgentSimulator(customers=150, seed=31).records(TOTAL, malformed=MALFORMED)
    worker.start()
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in records])
    seen = consume_until(
        s.bootstrap,
        {"audit": s.topics.audit},
        lambda got: len(got["audit"]) >= TOTAL - MALFORMED,
        timeout=240,
        decided=s,
    )
    audits = [a.value for a in seen["audit"]]
    assert len(audits) == TOTAL - MALFORMED, worker.log_tail()

    # the pure core alone, for the figure: decisions per second
    started = time.perf_counter()
    results = replay_all(audits, catalog([]))
    seconds = time.perf_counter() - started
    rate = len(results) / seconds
    print(f"\nreplay_all: {len(results)} decisions in {seconds:.2f} s = {rate:,.0f}/s")
    assert {r.status for r in results} == {MATCH}

    res = tower(s, "replay", "--all")
    print(res.output)
    assert res.exit_code == 0, res.output
    assert f"decisions replayed  {TOTAL - MALFORMED}\n" in res.stdout
    assert "matched             9900 (100.00%)" in res.stdout
    assert "mismatched          0" in res.stdout

    # audit and explain read the same decisions
    customer = audits[0]["customer_id"]
    mine = [a for a in seen["audit"] if a.value["customer_id"] == customer]
    table = tower(s, "audit", customer)
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()[1:]
    assert [(r.split()[1], r.split()[5]) for r in rows] == [
        (a.value["decision_id"], a.value["outcome"]) for a in mine
    ]
    ids = Counter(a["decision_id"] for a in audits)
    approved = next(
        a
        for a in seen["audit"]
        if a.value["outcome"] == "approved" and ids[a.value["decision_id"]] == 1
    )
    explained = tower(s, "explain", approved.value["decision_id"])
    assert explained.exit_code == 0, explained.output
    assert f"outcome   approved: {approved.value['reason']}" in explained.stdout
    assert f"action    {approved.value['action_id']}  ({s.topics.approved} partition" in (
        explained.stdout
    )

    # one forged copy of an approved decision, on the partition of the original
    forged = {**approved.value, "outcome": "suppressed", "reason": "forged"}
    producer = Producer({"bootstrap.servers": s.bootstrap, "acks": "all"})
    producer.produce(
        s.topics.audit,
        key=approved.key,
        value=encode_record("audit_record", forged),
        partition=approved.partition,
    )
    assert producer.flush(30) == 0
    caught = tower(s, "replay", "--all")
    print(caught.output)
    assert caught.exit_code == 1
    assert f"decisions replayed  {TOTAL - MALFORMED + 1}\n" in caught.stdout
    assert "mismatched          1\n" in caught.stdout
    assert f"{approved.value['decision_id']}  mismatch" in caught.stdout
    assert "outcome: recorded 'suppressed', replayed 'approved'" in caught.stdout
    one = tower(s, "replay", approved.value["decision_id"])
    assert one.exit_code == 1
    assert [line.split()[1] for line in one.stdout.splitlines() if line.startswith("d-")] == [
        "match",
        "mismatch",
    ]
