"""Hot reload on the real broker: a published policy takes over a running worker.

Expected decisions come from the pure core, with v1 deciding the first part of the stream
and v2 the second, one state chain throughout (the worker keeps its state across a swap).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import orjson
import pytest
from click.testing import CliRunner

from pipeline.contracts.policy_record import ACTIVE_KEY, PolicyRecord, encode_policy_record
from pipeline.core.arbitration import decide
from pipeline.core.decision import Decision
from pipeline.core.policy import Policy
from pipeline.core.policy_document import load_policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.core.whatif import what_if
from pipeline.ops.cli import main
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.ops.policy.governance import publish_policy
from pipeline.ops.policy.policy_topic import read_active, read_policies
from pipeline.ops.simulator import AgentSimulator, SimRecord
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

AGENTS = "agents: [winback-bot, upsell-bot, promo-bot, care-bot, notify-bot]\n"
V1 = "version: 1.5.0\n" + AGENTS
V2 = (
    "version: 2.0.0\n"
    + AGENTS
    + "caps:\n  - {name: per-channel-daily, limit: 1, window_ms: 86400000}\n"
    + "kill_switch:\n  agents: [promo-bot]\n"
)


def decisions(
    records: list[SimRecord], policy: Policy, states: dict[str, CustomerState]
) -> dict[str, Decision]:
    out = {}
    for rec in records:
        ev = rec.event
        assert ev is not None
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
        out[ev.event_id] = d
    return out


def healthz(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return json.loads(resp.read())["policy_version"]
    except OSError:
        return None


def wait_for_policy(port: int, version: str, started: float, timeout: float = 60.0) -> float:
    """Seconds from `started` (monotonic) until /healthz reports `version`."""
    while healthz(port) != version:
        assert time.monotonic() - started < timeout, f"worker never reported {version}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_published_policy_takes_over_a_running_worker(tower_settings, worker):
    s = tower_settings
    v1, v2 = load_policy(V1), load_policy(V2)
    sim = AgentSimulator(customers=150, seed=31, replay_share=0.0)
    part1 = sim.records(600)
    part2 = [r for _ in range(150) for r in sim.step()]
    states: dict[str, CustomerState] = {}
    expected = decisions(part1, v1, states)
    under_v1 = decisions(part2, v1, dict(states))  # what would have happened without v2
    expected.update(decisions(part2, v2, states))
    # the scenario exercises both changes: a killed agent and a cap v1 allowed
    part2_ids = {r.event.event_id for r in part2 if r.event}
    killed = [i for i in part2_ids if expected[i].rule == "kill_switch"]
    capped = [
        i
        for i in part2_ids
        if expected[i].rule == "frequency_cap" and under_v1[i].outcome == "approved"
    ]
    assert len(killed) > 20 and len(capped) > 20

    worker.start()
    worker.metrics_text()  # web server up
    started = time.monotonic()
    publish_policy(s, V1, "v1.yaml", "alice")
    swap_v1 = wait_for_policy(worker.web_port, v1.policy_version, started)
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in part1])
    topics = {"audit": s.topics.audit}

    def decided(seen):
        return sum(1 for a in seen["audit"] if a.value["kind"] != "policy")

    consume_until(s.bootstrap, topics, lambda seen: decided(seen) >= len(part1), settle=0)

    started = time.monotonic()
    published = publish_policy(s, V2, "v2.yaml", "bob")
    swap_v2 = wait_for_policy(worker.web_port, v2.policy_version, started)
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in part2])
    seen = consume_until(
        s.bootstrap, topics, lambda seen: decided(seen) >= len(expected), decided=s
    )
    # publish_policy() start -> /healthz: includes reading the old policy back and the audit write
    print(f"\nswap latency publish -> /healthz: v1 {swap_v1:.3f}s, v2 {swap_v2:.3f}s")

    audits = [a.value for a in seen["audit"] if a.value["kind"] != "policy"]
    assert Counter(a["event_id"] for a in audits) == Counter(expected.keys())  # one each
    for a in audits:
        want = expected[a["event_id"]]
        assert (a["policy_version"], a["outcome"], a["rule"]) == (
            want.policy_version,
            want.outcome,
            want.rule,
        ), a["event_id"]
    versions = Counter(a["policy_version"] for a in audits)
    assert versions == {v1.policy_version: len(part1), v2.policy_version: len(part2)}

    policy = [a.value for a in seen["audit"] if a.value["kind"] == "policy"]
    changes = [c for c in policy if c["outcome"] == "policy_changed"]
    assert [(c["policy_version"], c["agent"]) for c in changes] == [
        (v1.policy_version, "alice"),
        (v2.policy_version, "bob"),
    ]
    # the worker audits what it put in force itself, with who published it
    applied = [c for c in policy if c["outcome"] == "policy_applied"]
    assert [(c["policy_version"], c["trace"][0]["reason"]) for c in applied] == [
        (v1.policy_version, "alice"),
        (v2.policy_version, "bob"),
    ]
    assert {c["agent"] for c in applied} == {f"{s.app_id}@http://127.0.0.1:{worker.web_port}"}
    last = changes[-1]
    assert last["reason"].startswith(f"policy {v1.policy_version} -> {v2.policy_version}: ")
    assert "caps.per-channel-daily.limit: 3 -> 1" in last["reason"]
    assert "kill_switch.agents: +promo-bot" in last["reason"]
    assert (
        last["event_id"]
        == f"policy:{v2.policy_version}"
        == f"policy:{published.record.policy_version}"
    )

    active = read_active(s)
    assert active is not None and active.policy.policy_version == v2.policy_version
    shown = CliRunner().invoke(main, ["policy", "show", "--bootstrap", s.bootstrap], env=s.to_env())
    assert shown.exit_code == 0 and v2.policy_version in shown.output and "bob" in shown.output
    metrics = worker.metrics_text()
    assert f'tower_policy_info{{policy_version="{v2.policy_version}"}} 1.0' in metrics
    assert f'policy_version="{v1.policy_version}"' not in metrics
    assert "tower_policy_swaps_total 2.0" in metrics

    # a published document that fails validation is ignored: v2 stays in force
    bad = PolicyRecord("3.0.0", "3.0.0+0", "0", "version: 3.0.0\ncaps: 7\n", 0, "mallory")
    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, encode_policy_record(bad))])
    rejected = 'tower_policy_rejected_total{reason="invalid_policy"} 1.0'
    deadline = time.monotonic() + 60
    while rejected not in worker.metrics_text():
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.1)
    assert healthz(worker.web_port) == v2.policy_version


def test_diff_reads_recorded_events_from_a_topic(tower_settings, tmp_path):
    s = tower_settings
    records = AgentSimulator(customers=30, seed=41).records(500, malformed=5)
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in records])
    paths = [tmp_path / "v1.yaml", tmp_path / "v2.yaml"]
    for path, text in zip(paths, (V1, V2), strict=True):
        path.write_text(text)
    args = ["policy", "diff", *map(str, paths), "--bootstrap", s.bootstrap, "--json"]
    source = f"kafka:{s.topics.events}"
    result = CliRunner().invoke(main, [*args, "--events", source])
    assert result.exit_code == 0, result.output
    events = [r.event for r in records if r.event is not None]
    # partitions interleave on read, but each customer's order is kept: same report
    expected = what_if(events, load_policy(V1), load_policy(V2)).to_dict()
    got = orjson.loads(result.output)
    assert got["skipped"] == 5
    assert {k: got[k] for k in expected if k != "transitions"} == {
        k: v for k, v in expected.items() if k != "transitions"
    }
    assert {(t["old"], t["new"]): t["count"] for t in got["transitions"]} == {
        (t["old"], t["new"]): t["count"] for t in expected["transitions"]
    }
    limited = CliRunner().invoke(main, [*args, "--events", source, "--limit", "100"])
    assert orjson.loads(limited.output)["events"] == 100


def test_the_first_publish_is_compared_with_the_policy_workers_started_with(
    tower_settings, tmp_path
):
    """No `active` record yet: workers run TOWER_POLICY_FILE, so that is what a first
    publish changes, not the built-in default."""
    started_with = tmp_path / "v2.yaml"
    started_with.write_text(V2)
    s = replace(tower_settings, policy_file=started_with)
    deadline = time.monotonic() + 30
    while True:  # the new topic's partition may have no leader for a moment
        try:
            read_policies(s)
            break
        except PolicyCommandError:
            assert time.monotonic() < deadline, "the policies topic never became readable"
            time.sleep(0.2)
    published = publish_policy(s, V2.replace("version: 2.0.0", "version: 2.0.1"), "v.yaml", "al")
    assert published.old_version == load_policy(V2).policy_version
    assert not any("kill_switch" in line or "caps" in line for line in published.changes)
