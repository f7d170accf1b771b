"""Hold windows on the real broker: parked proposals come back through `tower-wakeups`."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline.contracts.codec import encode_event
from tests.factories import consent, proposal
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

HOLD_MS = 3_000
POLICY = f"""
version: 1.0.0
merge_window_ms: {HOLD_MS}
holds:
  hold_ms: {{message: {HOLD_MS}, offer: {HOLD_MS}}}
"""
AGENTS = ("promo-bot", "upsell-bot", "care-bot", "winback-bot", "notify-bot")


def five(customer: str, trigger: str, at: int) -> list:
    return [
        proposal(
            customer=customer,
            at=at + 10 * i,
            agent=agent,
            department="service",
            category="service",
            trigger=trigger,
            priority=prio,
            event_id=f"{customer}-{trigger}-{i}",
        )
        for i, (agent, prio) in enumerate(zip(AGENTS, (10, 50, 90, 30, 70), strict=True))
    ]


def test_five_agents_one_trigger_one_action_and_two_windows_two(tower_settings, worker, tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    worker.extra_env["TOWER_POLICY_FILE"] = str(policy_file)
    now = int(time.time() * 1000)
    one_window = five("cust-a", "cart", now)
    spread = five("cust-b", "renewal", now)
    spread = spread[:3] + [
        # past the first hold and past the merge window after its release: a second window
        e.__class__(
            **{
                **{f: getattr(e, f) for f in e.__slots__},
                "occurred_at": now + 2 * HOLD_MS + 500 + i,
            }
        )
        for i, e in enumerate(spread[3:])
    ]
    events = one_window + spread
    worker.start()
    produce(
        tower_settings.bootstrap,
        tower_settings.topics.events,
        [(e.customer_id.encode(), encode_event(e, "avro")) for e in events],
    )
    t = tower_settings.topics
    seen = consume_until(
        tower_settings.bootstrap,
        {"approved": t.approved, "audit": t.audit, "deadletter": t.deadletter},
        lambda s: sum(a.value["outcome"] != "held" for a in s["audit"]) >= len(events),
        timeout=120,
    )
    approved = [a.value for a in seen["approved"]]
    per_customer = Counter(a["customer_id"] for a in approved)
    assert per_customer == {"cust-a": 1, "cust-b": 2}, worker.log_tail()
    winner = next(a for a in approved if a["customer_id"] == "cust-a")
    assert winner["agents"][0] == "care-bot"  # priority 90: the highest score
    assert sorted(winner["source_event_ids"]) == sorted(e.event_id for e in one_window)
    assert set(winner["agents"]) == set(AGENTS)
    assert sorted(len(a["source_event_ids"]) for a in approved if a["customer_id"] == "cust-b") == [
        2,
        3,
    ]
    # every event: one `held` audit record, then exactly one final one
    outcomes = Counter((a.value["event_id"], a.value["outcome"] == "held") for a in seen["audit"])
    assert all(outcomes[(e.event_id, True)] == 1 for e in events)
    assert all(outcomes[(e.event_id, False)] == 1 for e in events)


TWO_HOLDS = """
version: 1.0.0
merge_window_ms: 600000
holds:
  hold_ms: {message: 6000, offer: 1000}
"""


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_a_short_hold_is_released_at_its_deadline_behind_a_long_one(
    tower_settings, worker, tmp_path, runtime
):
    """A 6 s hold, then a 1 s hold of the same customer (so the same wake-up partition,
    the long one first): each is released at its own deadline, never before it, and the
    short one goes out first, before the long one's deadline: it does not wait behind it.
    (How soon after a deadline a hold goes out is a timing, for the benchmarks.)"""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(TWO_HOLDS)
    worker.extra_env.update(TOWER_POLICY_FILE=str(policy_file), TOWER_RUNTIME=runtime)
    t = tower_settings.topics
    roles = {"approved": t.approved, "audit": t.audit}
    worker.start()
    warm = consent(True, customer="cust-h", at=int(time.time() * 1000))
    produce(tower_settings.bootstrap, t.events, [(b"cust-h", encode_event(warm, "json"))])
    consume_until(tower_settings.bootstrap, roles, lambda s: len(s["audit"]) >= 1, 120, 0)

    now = int(time.time() * 1000)
    long_hold = proposal(customer="cust-h", at=now, action="message", trigger="winback")
    short_hold = proposal(customer="cust-h", at=now + 1, action="offer", trigger="renewal")
    produce(
        tower_settings.bootstrap,
        t.events,
        [(b"cust-h", encode_event(e, "json")) for e in (long_hold, short_hold)],
    )
    seen = consume_until(
        tower_settings.bootstrap, roles, lambda s: len(s["approved"]) >= 2, timeout=60, settle=0
    )
    final = {
        a.value["event_id"]: a.value["processed_at"]
        for a in seen["audit"]
        if a.value["outcome"] not in ("held", "recorded")
    }
    assert set(final) == {long_hold.event_id, short_hold.event_id}, final
    late_ms = {
        "long": final[long_hold.event_id] - (now + 6000),
        "short": final[short_hold.event_id] - (now + 1 + 1000),
    }
    assert all(ms >= 0 for ms in late_ms.values()), late_ms  # none before its deadline
    assert final[short_hold.event_id] < now + 6000, late_ms  # not behind the long one
    order = [a.value["source_event_ids"] for a in seen["approved"]]
    assert order == [[short_hold.event_id], [long_hold.event_id]], order  # the short one first
