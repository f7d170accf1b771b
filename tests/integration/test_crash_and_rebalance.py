"""Windows and caps through worker crashes and rebalances, on the real broker."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from pipeline.core.engine import decide, release
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_document import load_policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.simulator import AgentSimulator
from tests.conftest import WorkerProcess
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

HOLD_POLICY = """
version: 1.0.0
caps: []
merge_window_ms: 600000
holds:
  hold_ms: {message: 1500, offer: 1500, answer: 1500}
"""


def answered_triggers(records, policy) -> set[tuple[str, str]]:
    """(customer, trigger) pairs the pure core approves something for, holds released last."""
    states: dict[str, CustomerState] = {}
    for rec in records:
        ev = rec.event
        _, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
    triggers = {r.event.event_id: r.event.trigger for r in records}
    out = set()
    for customer, state in states.items():
        for hold_id in list(state.holds):
            decisions, state = release(state, customer, hold_id, policy)
            out |= {(customer, triggers[d.event_id]) for d in decisions if d.action_id}
    return out


def outputs(settings):
    t = settings.topics
    return {"approved": t.approved, "audit": t.audit, "deadletter": t.deadletter}


@pytest.mark.soak
def test_twenty_thousand_held_proposals_survive_two_sigkills(tower_settings, worker, tmp_path):
    """On the Faust engine this passed 3 of 4 runs; the fourth stalled (about 220 actions
    still missing after 400 s, no error logged), so it runs with `make soak`, not in CI,
    until the stall is understood. `make test` runs the same scenario on the native engine
    (tests/integration/test_native_engine.py), where it is exactly-once."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(HOLD_POLICY)
    worker.extra_env["TOWER_POLICY_FILE"] = str(policy_file)
    records = AgentSimulator(customers=400, seed=31, replay_share=0.0).records(20_000)
    expected = answered_triggers(records, load_policy(HOLD_POLICY))
    by_event = {r.event.event_id: r.event for r in records}
    held_kinds = {"message", "offer", "answer"}
    assert (
        sum(1 for r in records if r.event.proposal and r.event.proposal.action in held_kinds)
        > 15_000
    )

    produce(
        tower_settings.bootstrap, tower_settings.topics.events, [(r.key, r.value) for r in records]
    )

    def final(seen):
        return {a.value["event_id"] for a in seen["audit"] if a.value["outcome"] != "held"}

    worker.start()
    for fraction in (0.3, 0.65):  # SIGKILL twice mid-stream, restart at once
        consume_until(
            tower_settings.bootstrap,
            outputs(tower_settings),
            lambda s, f=fraction: len(final(s)) >= f * len(records),
            timeout=300,
            settle=0,
        )
        worker.kill()
        worker.start()
    seen = consume_until(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(final(s)) >= len(records),
        timeout=400,
        settle=3,
    )

    assert final(seen) == set(by_event), "a held proposal was lost"
    actions: dict[str, dict] = {}
    for a in seen["approved"]:
        assert actions.setdefault(a.value["action_id"], a.value) == a.value
    per_trigger: dict[tuple[str, str], set[str]] = defaultdict(set)
    for action_id, a in actions.items():
        trigger = by_event[a["source_event_ids"][0]].trigger
        per_trigger[(a["customer_id"], trigger)].add(action_id)
    assert set(per_trigger) == expected, worker.log_tail()
    assert all(len(ids) == 1 for ids in per_trigger.values()), "two actions for one trigger"
    duplicates = len(seen["approved"]) - len(actions)
    print(
        f"approved records {len(seen['approved'])}, distinct {len(actions)}, "
        f"re-emitted after crashes {duplicates}"
    )


@pytest.mark.soak
def test_a_second_worker_joins_and_leaves_mid_stream(tower_settings, worker, tmp_path):
    """Partitions move to a new worker and back; caps and merges hold for moved customers.

    On the Faust engine this stalled once in four runs (35 records undecided after 300 s),
    so it runs with `make soak`; `make test` runs it on the native engine."""
    sim = AgentSimulator(customers=60, seed=41)
    records = sim.records(6_000, malformed=0)
    states: dict[str, CustomerState] = {}

    expected = set()
    for rec in records:
        ev = rec.event
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, DEFAULT_POLICY, ev.occurred_at
        )
        if d.action_id:
            expected.add(d.action_id)
    second = WorkerProcess(tower_settings, tmp_path, tmp_path / "worker-2")
    second.starts = 100  # its own log file names
    thirds = [
        records[: len(records) // 3],
        records[len(records) // 3 : 2 * len(records) // 3],
        records[2 * len(records) // 3 :],
    ]
    worker.start()
    try:
        for i, part in enumerate(thirds):
            produce(
                tower_settings.bootstrap,
                tower_settings.topics.events,
                [(r.key, r.value) for r in part],
            )
            if i == 0:
                second.start()  # joins: a rebalance moves half the partitions to it
            elif i == 1:
                time.sleep(3)
                second.stop()  # leaves: its partitions come back to the first worker
        seen = consume_until(
            tower_settings.bootstrap,
            outputs(tower_settings),
            lambda s: (
                len({(a.partition, a.value["source_offset"]) for a in s["audit"]}) >= len(records)
            ),
            timeout=300,
        )
    finally:
        second.stop()
    got = {a.value["action_id"] for a in seen["approved"]}
    assert got == expected, worker.log_tail()
