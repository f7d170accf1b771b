"""End to end on the real broker: 1,000 mixed records in, outputs checked from the topics."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client import generate_latest

from pipeline.core.arbitration import decide
from pipeline.core.decision import Decision
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.simulator import AgentSimulator, SimRecord
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime.transactional.changelog import changelog_topic
from tests.kafka_io import batch_codecs, consume_until, produce, wait_committed

pytestmark = pytest.mark.integration


def expected_decisions(
    records: list[SimRecord], states: dict[str, CustomerState] | None = None
) -> list[Decision]:
    """What the pure core decides for the valid records, customer by customer in order."""
    states = {} if states is None else states
    out = []
    for rec in records:
        if rec.event is None:
            continue
        ev = rec.event
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, DEFAULT_POLICY, ev.occurred_at
        )
        out.append(d)
    return out


def outputs(settings):
    t = settings.topics
    return {"approved": t.approved, "audit": t.audit, "deadletter": t.deadletter}


def metric_names(exposition: str) -> set[str]:
    """Metric families, without the `_created` series counters grow once they have samples."""
    names = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    return {n for n in names if not n.endswith("_created")}


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_thousand_mixed_records_reconcile(tower_settings, worker, runtime, local_broker):
    worker.extra_env["TOWER_RUNTIME"] = runtime
    records = AgentSimulator(customers=40, seed=11).records(1000, malformed=50)
    valid = [r for r in records if r.event is not None]
    expected = expected_decisions(records)
    expected_actions = {d.action_id for d in expected if d.action_id}
    formats = Counter(r.value[:2] == b"\xc3\x01" for r in valid)
    outcomes = Counter(d.outcome for d in expected)
    # the scenario really mixes what it claims to mix
    assert formats[True] > 100 and formats[False] > 100
    assert all(outcomes[o] > 0 for o in ("approved", "merged", "suppressed", "duplicate"))

    worker.start()
    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in records]
    )
    seen = consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) >= len(valid) and len(s["deadletter"]) >= 50,
        timeout=180,
        decided=tower_settings,
    )

    assert {a.value["action_id"] for a in seen["approved"]} == expected_actions
    assert len(seen["approved"]) == len(expected_actions)  # no action twice
    # exactly one final audit record per valid input record
    audit_sources = Counter((a.partition, a.value["source_offset"]) for a in seen["audit"])
    assert len(seen["audit"]) == len(valid) and max(audit_sources.values()) == 1
    assert Counter(a.value["outcome"] for a in seen["audit"]) == outcomes
    assert {a.value["policy_version"] for a in seen["audit"]} == {DEFAULT_POLICY.policy_version}
    # 50 dead letters, each with a reason and the raw bytes
    reasons = Counter(d.value["reason"] for d in seen["deadletter"])
    assert sum(reasons.values()) == 50
    assert set(reasons) == {
        "bad_json",
        "unknown_fingerprint",
        "missing_field",
        "unknown_format",
        "key_mismatch",
    }
    assert all(d.value["raw_value"] and d.value["detail"] for d in seen["deadletter"])
    # counts reconcile: in = audited + dead-lettered
    assert len(records) == len(seen["audit"]) + len(seen["deadletter"])

    metrics = worker.metrics_text()
    assert 'tower_dead_letters_total{reason="bad_json"} 10.0' in metrics
    assert "tower_decisions_total" in metrics and "tower_end_to_end_lag_seconds" in metrics
    # both runtimes expose the same metrics: the shared set, nothing of their own
    assert metric_names(metrics) == metric_names(generate_latest(TowerMetrics().registry).decode())
    url = f"http://127.0.0.1:{worker.web_port}/healthz"
    for _ in range(40):  # the lag it shows is measured about once a second
        with urllib.request.urlopen(url, timeout=5) as resp:
            health = json.loads(resp.read())
        if health["lag"] and set(health["lag"].values()) == {0}:
            break
        time.sleep(0.25)
    assert health["policy_version"] == DEFAULT_POLICY.policy_version
    assert health["runtime"] == runtime and health["ready"] is True
    assert health["partitions"] == list(range(tower_settings.partitions))
    assert set(health["lag"].values()) == {0}  # everything decided
    if local_broker is not None:  # what the worker wrote is zstd (TOWER_COMPRESSION's default)
        t = tower_settings.topics
        for topic in (t.approved, t.audit, t.deadletter, changelog_topic(tower_settings.app_id)):
            assert set(batch_codecs(local_broker.data_dir, topic)) == {"zstd"}, topic
    if runtime == "transactional":
        assert health["transactions"] > 0
        worker.stop()  # SIGTERM: finishes the transaction in flight, closes, exits 0
        assert worker.proc.returncode == 0, worker.log_tail()


def test_sigkill_and_restart_resumes_caps_from_changelog(tower_settings, worker):
    sim = AgentSimulator(customers=6, seed=5, replay_share=0.0)
    before = sim.records(300)
    after = [r for _ in range(60) for r in sim.step()]
    states: dict[str, CustomerState] = {}
    expected_before = expected_decisions(before, states)
    expected_after = expected_decisions(after, states)
    actions_before = {d.action_id for d in expected_before if d.action_id}
    actions_after = {d.action_id for d in expected_after if d.action_id}
    # without the state from before the crash, the caps would let more through afterwards
    naive_after = {d.action_id for d in expected_decisions(after) if d.action_id}
    assert len(naive_after) > len(actions_after)

    worker.start()
    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in before]
    )
    consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) >= len(before),
        timeout=120,
        settle=0,
    )
    # killed once everything decided is durable (the group's offsets are committed only
    # after the state holding them is on the broker)
    wait_committed(tower_settings, tower_settings.topics.events)
    worker.kill()
    shutil.rmtree(worker.data_dir)  # local RocksDB gone: state must come from the changelog
    worker.start()
    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in after]
    )
    seen = consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) >= len(before) + len(after),
        timeout=180,
        decided=tower_settings,
    )
    got = Counter(a.value["action_id"] for a in seen["approved"])
    assert set(got) == actions_before | actions_after, worker.log_tail()
    assert max(got.values()) == 1
