"""The agents' API on the real broker, both runtimes, two workers: context and preflight
answered by the worker that does not own the customer, and every preflight equal to the
decision the tower then makes for the same event."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from pipeline.client import TowerClient
from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.partitioning import key_partition
from pipeline.ops.simulator import ShowcaseSimulator
from tests.conftest import WorkerProcess
from tests.kafka_io import produce

pytestmark = pytest.mark.integration

SHOWCASE = Path(__file__).resolve().parents[2] / "deploy" / "policy.showcase.yaml"


def call(url: str, body: bytes | None = None, retries: int = 20) -> tuple[int, dict[str, Any]]:
    """GET (or POST `body`); a 503 is retried after its Retry-After, as a client would."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    for _ in range(retries):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            answer = exc.code, json.loads(exc.read() or b"{}")
            if exc.code != 503:
                return answer
            time.sleep(float(exc.headers.get("Retry-After", "1")))
    return answer


class AuditReader:
    """Every audit record so far, read incrementally (assigned, no group to join)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "test-audit-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        #: event id -> its audit records, in order
        self.by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def until(self, counts: Counter[str], timeout: float = 60.0) -> None:
        """Until each event id has `counts[id]` audit records (one per input record)."""
        deadline = time.monotonic() + timeout
        while missing := {e for e, n in counts.items() if len(self.by_event[e]) < n}:
            assert time.monotonic() < deadline, f"not audited: {missing}"
            for msg in self.consumer.consume(1000, 0.2):
                if msg.error() is None:
                    record = decode_record("audit_record", msg.value())
                    self.by_event[record["event_id"]].append(record)

    def close(self) -> None:
        self.consumer.close()


def owners(workers: list[WorkerProcess]) -> dict[int, str]:
    """Partition -> URL of its owner, once every worker is ready with partitions of its own
    and together they own all of them."""
    for _ in range(240):
        found: dict[int, str] = {}
        owning = 0
        for w in workers:
            url = f"http://127.0.0.1:{w.web_port}"
            try:
                status, health = call(f"{url}/healthz")
            except OSError:
                break
            if status == 200 and health["ready"] and health["partitions"]:
                owning += 1
                found.update({p: url for p in health["partitions"]})
        if owning == len(workers) and len(found) == workers[0].settings.partitions:
            return found
        time.sleep(0.5)
    pytest.fail("the workers never owned every partition between them")


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_context_and_preflight_from_the_other_worker_equal_the_real_decisions(
    tower_settings, worker, tmp_path, runtime
):
    policy = yaml.safe_load(SHOWCASE.read_text())
    # Holds close at wall-clock deadlines, which would change states between a preflight
    # and its event; their preflight equality is proven on the pure core.
    policy.pop("holds")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    (tmp_path / "b").mkdir()
    other = WorkerProcess(tower_settings, tmp_path / "b", tmp_path / "b" / "worker")
    workers = [worker, other]
    t = tower_settings.topics
    audits = AuditReader(tower_settings.bootstrap, t.audit, tower_settings.partitions)
    try:
        for w in workers:
            w.extra_env.update(TOWER_RUNTIME=runtime, TOWER_POLICY_FILE=str(policy_file))
            w.start()
        owner = owners(workers)
        urls = set(owner.values())
        assert len(urls) == 2, "each worker owns some partitions"

        def non_owner(customer: str) -> str:
            p = key_partition(customer.encode(), tower_settings.partitions)
            return (urls - {owner[p]}).pop()

        sim = ShowcaseSimulator(customers=24, seed=7)
        queues: dict[str, list] = defaultdict(list)
        for rec in sim.records(720):
            if rec.event is not None:
                queues[rec.event.customer_id].append(rec.event)
        rounds = max(len(q) for q in queues.values())
        compared, rules, produced = 0, Counter(), Counter()
        for i in range(rounds):
            batch = [q[i] for q in queues.values() if i < len(q)]
            expected, nth = {}, {}
            for ev in batch:
                if ev.proposal is None or ev.event_id in expected:
                    continue
                status, answer = call(
                    f"{non_owner(ev.customer_id)}/api/v1/preflight", encode_event(ev, "json")
                )
                assert status == 200 and answer["advisory"] is True, answer
                assert (
                    answer["served_by"]
                    == owner[key_partition(ev.customer_id.encode(), tower_settings.partitions)]
                )
                expected[ev.event_id] = answer
            for ev in batch:  # the audit record of this very input: the nth of its id
                nth.setdefault(ev.event_id, produced[ev.event_id])
                produced[ev.event_id] += 1
            produce(
                tower_settings.bootstrap,
                t.events,
                [(ev.customer_id.encode(), encode_event(ev, "json")) for ev in batch],
            )
            audits.until(produced)
            for event_id, answer in expected.items():
                real = audits.by_event[event_id][nth[event_id]]
                fields = ("decision_id", "outcome", "rule", "reason")
                assert {f: answer[f] for f in fields} == {f: real[f] for f in fields}, event_id
                compared += 1
                rules[answer["rule"] or answer["outcome"]] += 1
        # the sequence is mixed: every rule of the showcase decided some of them
        assert {
            "consent",
            "frequency_cap",
            "quiet_hours",
            "duplicate_merge",
            "offer_arbitration",
            "service_first",
            "kill_switch",
            "loop_prevention",
            "consistency_ledger",
            "escalation",
            "replay",
        } <= set(rules), rules
        assert compared > 200

        # context, from the worker that does not own the customer
        customer = next(iter(queues))
        status, ctx = call(f"{non_owner(customer)}/api/v1/customers/{customer}/context")
        p = key_partition(customer.encode(), tower_settings.partitions)
        assert status == 200 and ctx["served_by"] == owner[p] and ctx["known"]
        assert ctx["position"]["partition"] == p and ctx["consents"]
        # an unknown customer, and an invalid body
        status, body = call(f"{non_owner('nobody-at-all')}/api/v1/customers/nobody-at-all/context")
        assert status == 200 and body["known"] is False
        status, body = call(f"{next(iter(urls))}/api/v1/preflight", b'{"customer_id": "x"}')
        assert status == 400 and body["error"] == "invalid" and body["problems"]

        # the agents' client, against the worker that does not own the customer
        with TowerClient(tower_settings.bootstrap, non_owner(customer), topics=t) as tower:
            assert tower.context(customer)["customer_id"] == customer
            fields = {
                "agent": "care-bot",
                "department": "service",
                "channel": "chat",
                "action": "answer",
                "category": "service",
                "occurred_at": ctx["as_of"],
            }
            advice = tower.preflight(customer, event_id="client-1", **fields)
            event_id = tower.propose(customer, event_id="client-1", **fields)
            decided = tower.wait_decision(event_id, timeout_s=60)
            assert (decided["decision_id"], decided["outcome"], decided["rule"]) == (
                advice.decision_id,
                advice.outcome,
                advice.rule,
            )
            assert tower.context("nobody-at-all")["known"] is False
    finally:
        audits.close()
        other.stop()
