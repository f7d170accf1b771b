"""Proof of impact on the real broker: a closed loop whose truth is known, then
`tower report --json` over the audit topic must recover it (the winback agent's conversion
lift, the nagging agent's harm), and replay must still match every decision."""

from __future__ import annotations

import time

import orjson
import pytest

from pipeline.contracts.codec import encode_event
from pipeline.ops.outcome_world import Effect, OutcomeWorld
from tests.integration.test_replay import tower
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

CUSTOMERS = 3_000
POLICY = """\
version: 1.0.0
agents: [winback-bot, nag-bot]
experiments:
  salt: "e2e"
  control_group: {share: 0.05, categories: [marketing]}
  holdouts: {winback-bot: 0.5, nag-bot: 0.5}
  attribution_window_ms: 604800000
"""
WINBACK = Effect("winback-bot", purchase_if_received=0.30, purchase_otherwise=0.20)
NAGGING = Effect(
    "nag-bot", category="sales", unsubscribe_if_received=0.15, unsubscribe_otherwise=0.03
)


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_the_report_recovers_the_truth_of_a_closed_loop(tower_settings, worker, tmp_path, runtime):
    s, t = tower_settings, tower_settings.topics
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    worker.extra_env.update(TOWER_POLICY_FILE=str(policy_file), TOWER_RUNTIME=runtime)
    world = OutcomeWorld((WINBACK, NAGGING), CUSTOMERS, int(time.time() * 1000) - 86_400_000)
    opening = world.opening()
    worker.start()
    produce(s.bootstrap, t.events, [(e.customer_id.encode(), encode_event(e)) for e in opening])
    seen = consume_until(
        s.bootstrap,
        {"approved": t.approved, "audit": t.audit},
        lambda got: len(got["audit"]) >= len(opening),
        timeout=240,
        decided=s,
    )
    assert len(seen["audit"]) == len(opening), worker.log_tail()
    outcomes = {a.value["outcome"] for a in seen["audit"]}
    assert {"approved", "withheld", "recorded"} <= outcomes
    received = {(a.value["customer_id"], a.value["agents"][0]): True for a in seen["approved"]}
    withheld = {
        (a.value["customer_id"], a.value["agent"])
        for a in seen["audit"]
        if a.value["outcome"] == "withheld"
    }
    assert not withheld & received.keys()  # a withheld proposal never produces an action

    answers = world.answers(received)
    produce(s.bootstrap, t.events, [(e.customer_id.encode(), encode_event(e)) for e in answers])
    total = len(opening) + len(answers)
    done = consume_until(
        s.bootstrap, {"audit": t.audit}, lambda g: len(g["audit"]) >= total, decided=s
    )
    assert len(done["audit"]) == total, worker.log_tail()

    res = tower(s, "report", "--json", "--policy", str(policy_file))
    assert res.exit_code == 0, res.output
    rows = orjson.loads(res.stdout)["rows"]
    by = {(r["experiment"], r["metric"]): r for r in rows}
    conversion = by[("holdout:winback-bot", "conversion")]
    print(f"\nwinback conversion: {conversion}")
    assert conversion["ci_low"] < 0.10 < conversion["ci_high"], conversion
    assert conversion["ci_low"] > 0 and conversion["verdict"] == "helps"
    unsubscribe = by[("holdout:nag-bot", "unsubscribe")]
    assert unsubscribe["verdict"] == "hurts", unsubscribe
    control = by[("control_group", "conversion")]
    assert control["arm_control"] == "control" and control["n_control"] > 0

    metrics = worker.metrics_text()
    assert 'tower_experiment_exposures_total{arm="holdout",experiment="holdout:winback-bot"}' in (
        metrics
    )
    assert 'metric="conversion"' in metrics

    replayed = tower(s, "replay", "--all", "--policy", str(policy_file))
    assert replayed.exit_code == 0, replayed.output
