"""Trace context on the real broker, both runtimes: an input's `traceparent`/`tracestate`
reach its action, audit and wake-up records; a hold released after a worker restart
carries the winner's; the batch spans (the SDK's in-memory exporter) link to the inputs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.contracts.audit_chain import SEAL_HEADER
from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from tests.factories import proposal

pytestmark = pytest.mark.integration

HOLD_MS = 6_000
POLICY = f"""
version: 1.0.0
holds:
  hold_ms: {{message: {HOLD_MS}}}
"""
SCHEMAS = {"approved": "approved_action", "audit": "audit_record"}


def ctx(n: int) -> list[tuple[str, bytes]]:
    return [("traceparent", f"00-{n:032x}-{n:016x}-01".encode()), ("tracestate", b"t=%d" % n)]


def produce(bootstrap: str, topic: str, records: list[tuple[Any, list | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **JAVA_PARTITIONER})
    for event, headers in records:
        value = encode_event(event, "json")
        producer.produce(topic, value, event.customer_id.encode(), headers=headers)
    assert producer.flush(30) == 0


def read(bootstrap: str, topics: dict[str, str], done, timeout: float = 120) -> dict:
    """{role: [(value, headers)]} of `topics` from the start until `done(seen)`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"trace-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe(list(topics.values()))
    role_of = {name: role for role, name in topics.items()}
    seen: dict[str, list] = {role: [] for role in topics}
    deadline = time.monotonic() + timeout
    try:
        while not done(seen):
            assert time.monotonic() < deadline, (
                f"incomplete: { {r: len(v) for r, v in seen.items()} }"
            )
            for msg in consumer.consume(100, 0.5):
                if msg.error():
                    continue
                role = role_of[msg.topic()]
                raw = msg.value()
                value = decode_record(SCHEMAS[role], raw) if role in SCHEMAS else json.loads(raw)
                seen[role].append((value, [(k, v) for k, v in msg.headers() or ()]))
    finally:
        consumer.close()
    return seen


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_trace_context_reaches_every_output_and_survives_a_restart_in_a_hold(
    tower_settings, worker, tmp_path, runtime
):
    spans = tmp_path / "spans.jsonl"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    worker.module = "tests.traced_worker"
    worker.extra_env.update(
        TOWER_POLICY_FILE=str(policy_file), TOWER_RUNTIME=runtime, TOWER_TEST_SPANS=str(spans)
    )
    t = tower_settings.topics
    now = int(time.time() * 1000)
    held = [
        proposal(
            customer="cust-t",
            at=now + i,
            agent=f"bot-{i}",
            trigger="cart",
            category="service",
            priority=p,
            event_id=f"held-{i}",
        )
        for i, p in enumerate((20, 80, 40))
    ]
    bad = proposal(customer="cust-u", at=now, event_id="bad-parent", category="service")
    plain = proposal(customer="cust-v", at=now, event_id="no-headers", category="service")
    worker.start()
    produce(
        tower_settings.bootstrap,
        t.events,
        [
            *((e, ctx(i + 1)) for i, e in enumerate(held)),
            (bad, [("traceparent", b"00-zz-01"), ("tracestate", b"t=9")]),
            (plain, None),
        ],
    )
    roles = {"audit": t.audit, "wakeups": t.wakeups}
    first = read(tower_settings.bootstrap, roles, lambda s: len(s["audit"]) >= 5)
    assert "tower_trace_context_invalid_total 1.0" in worker.metrics_text()
    worker.kill()  # before the hold's deadline, most likely: then its release is the restart's
    worker.start()
    roles = {"approved": t.approved, "audit": t.audit, "wakeups": t.wakeups}
    seen = read(
        tower_settings.bootstrap,
        roles,
        lambda s: sum(a["outcome"] != "held" for a, _ in s["audit"]) >= 5,
    )

    def without_chain(headers: list) -> list:
        return [(k, v) for k, v in headers if k != SEAL_HEADER]

    audits = {(a["event_id"], a["outcome"]): without_chain(h) for a, h in seen["audit"]}
    for i, e in enumerate(held):
        assert audits[(e.event_id, "held")] == ctx(i + 1), worker.log_tail()
    assert audits[("held-1", "approved")] == ctx(2)  # the winner's, after the restart
    assert audits[("held-0", "merged")] == ctx(1)
    assert audits[("held-2", "merged")] == ctx(3)
    others = {
        a["event_id"]: without_chain(h) for a, h in seen["audit"] if a["customer_id"] != "cust-t"
    }
    assert others == {bad.event_id: [], plain.event_id: []}  # malformed: carried nowhere
    actions = {a["agents"][0]: h for a, h in seen["approved"] if a["customer_id"] == "cust-t"}
    assert actions == {"bot-1": ctx(2)}
    wakeups = {w["customer_id"]: h for w, h in first["wakeups"]}
    assert wakeups["cust-t"] == ctx(1)  # the proposal that opened the hold

    linked: set[int] = set()
    for line in spans.read_text().splitlines():
        span = json.loads(line)
        if span["name"] == "tower.decide":
            linked |= {int(link["context"]["trace_id"], 16) for link in span["links"]}
    assert {1, 2, 3} <= linked
