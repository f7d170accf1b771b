"""Ask and decide over HTTP on the real broker, both runtimes, two workers, every request
sent to the worker that does not own the customer: decisions, a held proposal answered at
its release, 202 then the decision, retries giving one action, agent-bound tokens, the
index's horizon, and every answer checked against the OpenAPI document."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from pipeline.contracts.codec import decode_record
from pipeline.contracts.partitioning import key_partition
from pipeline.web.auth import token_line
from tests.conftest import WorkerProcess
from tests.integration.test_agent_api import call, owners
from tests.openapi_check import OpenApiCheck

pytestmark = pytest.mark.integration

SHOWCASE = Path(__file__).resolve().parents[2] / "deploy" / "policy.showcase.yaml"
AGENT = "agent-token-" + "a" * 32
OPERATOR = "operator-token-" + "o" * 32
INDEX_SIZE = 12


class Api:
    """The agents' API of one worker, each answer checked against the OpenAPI document."""

    def __init__(self, url: str, check: OpenApiCheck) -> None:
        self.url, self.check = url, check

    def call(
        self,
        method: str,
        route: str,
        path: str,
        body: Any = None,
        token: str | None = AGENT,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        for _ in range(30):
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    status, raw, got = resp.status, resp.read(), dict(resp.headers)
            except urllib.error.HTTPError as exc:
                status, raw, got = exc.code, exc.read(), dict(exc.headers)
            answer = json.loads(raw)
            self.check(route, method, status, answer, got)
            if status != 503:
                return status, answer, got
            time.sleep(float(got.get("Retry-After", "1")))
        return status, answer, got


class ApprovedReader:
    """The approved-actions records so far, by source event id."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "test-approved-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.by_event: dict[str, int] = {}

    def until(self, event_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while event_id not in self.by_event:
            assert time.monotonic() < deadline, f"no action of {event_id}"
            for msg in self.consumer.consume(1000, 0.2):
                if msg.error() is None:
                    action = decode_record("approved_action", msg.value())
                    for source in action["source_event_ids"]:
                        self.by_event[source] = self.by_event.get(source, 0) + 1

    def close(self) -> None:
        self.consumer.close()


def answer(customer: str, **more: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "department": "service",
        "channel": "chat",
        "proposal": {"action": "answer", "category": "service", "priority": 60, "content": "Hi"},
        **more,
    }


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_ask_and_decide_over_http(tower_settings, worker, tmp_path, runtime):
    policy = yaml.safe_load(SHOWCASE.read_text())
    policy["holds"] = {"hold_ms": {"message": 1500, "offer": 1500}, "merge_key": "trigger"}
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    tokens = tmp_path / "tokens"
    tokens.write_text(
        token_line(AGENT, "agent", "care-bot") + token_line(OPERATOR, "operator", "ops")
    )
    key = tmp_path / "peer-key"
    key.write_text("p" * 64 + "\n")
    (tmp_path / "b").mkdir()
    other = WorkerProcess(tower_settings, tmp_path / "b", tmp_path / "b" / "worker")
    workers = [worker, other]
    t = tower_settings.topics
    approved = ApprovedReader(tower_settings.bootstrap, t.approved, tower_settings.partitions)
    check = OpenApiCheck()
    try:
        for w in workers:
            w.extra_env.update(
                TOWER_RUNTIME=runtime,
                TOWER_POLICY_FILE=str(policy_file),
                TOWER_WEB_TOKENS_FILE=str(tokens),
                TOWER_WEB_PEER_KEY_FILE=str(key),
                TOWER_WEB_OPEN_METRICS="true",
                TOWER_DECISION_INDEX_SIZE=str(INDEX_SIZE),
            )
            w.start()
        owner = owners(workers)
        urls = set(owner.values())

        def via_other(customer: str) -> Api:
            p = key_partition(customer.encode(), tower_settings.partitions)
            return Api((urls - {owner[p]}).pop(), check)

        customer = "cust-http-1"
        api = via_other(customer)
        consent = {
            "customer_id": customer,
            "agent": "crm",
            "department": "system",
            "signal": {
                "type": "consent_changed",
                "attributes": {"channel": "all", "purpose": "all", "granted": "true"},
            },
        }
        status, body, _ = api.call("POST", "/api/v1/signals", "/api/v1/signals", consent, OPERATOR)
        assert status == 200 and body["outcome"] == "recorded", body

        # ask and decide: the decision in the answer, the action as published
        status, first, _ = api.call(
            "POST", "/api/v1/proposals", "/api/v1/proposals?wait=20", answer(customer)
        )
        assert status == 200 and first["status"] == "decided", first
        assert first["outcome"] == "approved" and first["action"]["content"], first
        p = key_partition(customer.encode(), tower_settings.partitions)
        assert first["served_by"] == owner[p]

        # retries with the same event id: the same decision, one action
        retry = answer(customer, event_id=first["event_id"])
        for _ in range(3):
            status, again, _ = api.call(
                "POST", "/api/v1/proposals", "/api/v1/proposals?wait=20", retry
            )
            assert status == 200 and again == first
        status, marker, _ = api.call(
            "POST",
            "/api/v1/proposals",
            "/api/v1/proposals?wait=20",
            answer(customer, event_id="marker-1"),
        )
        assert status == 200 and marker["outcome"] == "approved", marker
        approved.until("marker-1")  # after the retries in the customer's partition
        assert approved.by_event[first["event_id"]] == 1

        # a held proposal is answered when its hold is released, within the wait
        held = {
            "customer_id": customer,
            "department": "service",
            "channel": "email",
            "trigger": "order-shipped",
            "proposal": {
                "action": "message",
                "category": "service",
                "priority": 40,
                "content": "Shipped",
            },
        }
        status, body, _ = api.call("POST", "/api/v1/proposals", "/api/v1/proposals?wait=30", held)
        assert status == 200 and body["status"] == "decided" and body["outcome"] != "held", body

        # no wait, a proposal that is held: 202 and the decision's address, asked until
        # the hold is released
        held_too = {**held, "trigger": "no-wait"}
        status, pending, headers = api.call(
            "POST", "/api/v1/proposals", "/api/v1/proposals?wait=0", held_too
        )
        assert status == 202 and pending["status"] == "pending", pending
        location = headers["Location"]
        assert location.startswith(f"/api/v1/decisions/{pending['event_id']}?customer_id=")
        for _ in range(1200):
            status, later, _ = api.call("GET", "/api/v1/decisions/{event_id}", location)
            if status == 200:
                break
            assert status == 202
            time.sleep(0.05)
        assert status == 200 and later["event_id"] == pending["event_id"], later

        # an agent token cannot propose as another agent: 403, counted where refused
        status, body, _ = api.call(
            "POST", "/api/v1/proposals", "/api/v1/proposals", answer(customer, agent="promo-bot")
        )
        assert status == 403 and body["error"] == "forbidden", body
        with urllib.request.urlopen(api.url + "/metrics") as resp:
            metrics = resp.read().decode()
        assert 'tower_web_agent_refusals_total{agent="care-bot"} 1.0' in metrics

        # context, preflight, errors: all answers documented
        status, _, _ = api.call(
            "GET",
            "/api/v1/customers/{customer_id}/context",
            f"/api/v1/customers/{customer}/context",
        )
        assert status == 200
        status, _, _ = api.call("POST", "/api/v1/preflight", "/api/v1/preflight", answer(customer))
        assert status == 200
        status, body, _ = api.call(
            "POST",
            "/api/v1/proposals",
            "/api/v1/proposals",
            {"customer_id": customer, "channel": "fax"},
        )
        assert status == 400 and {"channel", "department", "proposal"} <= {
            p["field"] for p in body["problems"]
        }
        status, _, _ = api.call(
            "POST", "/api/v1/proposals", "/api/v1/proposals", answer(customer), token=None
        )
        assert status == 401
        status, _, _ = api.call("POST", "/api/v1/signals", "/api/v1/signals", consent)
        assert status == 403  # the agent token is care-bot's, the signal crm's
        status, unknown, _ = api.call(
            "GET",
            "/api/v1/customers/{customer_id}/context",
            "/api/v1/customers/nobody-here/context",
        )
        assert status == 200 and unknown["known"] is False  # the policy's empty context
        status, _, _ = api.call("GET", "/api/v1/openapi.json", "/api/v1/openapi.json")
        assert status == 200

        # past the index's horizon: 404 with a hint
        for i in range(INDEX_SIZE + 2):
            status, _, _ = api.call(
                "POST",
                "/api/v1/proposals",
                "/api/v1/proposals?wait=20",
                answer(customer, event_id=f"fill-{i}"),
            )
            assert status == 200
        # an answer comes at the decision, the state with the kept decisions once its
        # transaction committed: until then the kept horizon is a few decisions longer
        for _ in range(200):
            status, body, _ = api.call(
                "GET",
                "/api/v1/decisions/{event_id}",
                f"/api/v1/decisions/{first['event_id']}?customer_id={customer}",
            )
            if status == 404:
                break
            time.sleep(0.05)
        assert (
            status == 404
            and body["error"] == "not_found"
            and "TOWER_DECISION_INDEX_SIZE" in body["hint"]
        )

        documented = {
            (route, method.upper(), int(status))
            for route, ops in check.document["paths"].items()
            if route.startswith("/api/v1/")
            for method, op in ops.items()
            for status in op["responses"]
        }
        assert (
            {
                ("/api/v1/proposals", "POST", 200),
                ("/api/v1/proposals", "POST", 202),
                ("/api/v1/proposals", "POST", 400),
                ("/api/v1/proposals", "POST", 401),
                ("/api/v1/proposals", "POST", 403),
                ("/api/v1/signals", "POST", 200),
                ("/api/v1/decisions/{event_id}", "GET", 200),
                ("/api/v1/decisions/{event_id}", "GET", 404),
                ("/api/v1/customers/{customer_id}/context", "GET", 200),
            }
            <= check.seen
            <= documented
        )
    finally:
        approved.close()
        other.stop()


def test_a_decision_is_looked_up_on_the_audit_and_approved_actions_topics(tower_settings):
    """What a worker answers for an event its index does not hold (decided before it took
    the partition on): the same answer as from the index, read from the topics."""
    from pipeline.contracts.codec import encode_event
    from pipeline.core.policy import DEFAULT_POLICY
    from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
    from pipeline.processing.decision_index import DecisionIndex, decision_body
    from pipeline.web.recorded_decisions import RecordedDecisions
    from tests.factories import consent, proposal
    from tests.kafka_io import produce

    processor = BatchProcessor(tower_settings, policy=lambda: DEFAULT_POLICY)
    processor.index = index = DecisionIndex()
    events = [consent(True, customer="ana"), proposal("ana", event_id="asked")]
    events.append(proposal("ana", event_id="asked"))  # its retry: decided duplicate
    p = key_partition(b"ana", tower_settings.partitions)
    records = [
        InputRecord(b"ana", encode_event(e, "json"), p, i, None) for i, e in enumerate(events)
    ]
    outputs = processor.process_and_save(records, DictStateStore()).outputs
    for topic in {o.topic for o in outputs}:
        produce(
            tower_settings.bootstrap, topic, [(o.key, o.value) for o in outputs if o.topic == topic]
        )
    found = index.find(p, "asked")
    assert not isinstance(found, (bool, str)) and found.action is not None
    recorded = RecordedDecisions(tower_settings)
    try:
        assert recorded(p, "ana", "asked") == decision_body(found)
        assert recorded(p, "ana", "never-sent") is None
    finally:
        recorded.audit.close()
        recorded.actions.close()


def delete_records(settings: Any, topics: list[str]) -> None:
    """Every record of `topics` deleted (their log start moved to the end)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    reader = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test-delete"})
    ends = []
    for topic in topics:
        for p in range(settings.partitions):
            _, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends.append(TopicPartition(topic, p, high))
    reader.close()
    for future in admin.delete_records(ends).values():
        future.result(30)


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_decisions_are_answered_after_a_restart_and_by_a_new_worker_without_the_topics(
    tower_settings, worker, tmp_path, runtime
):
    """The decisions kept with the state: the audit and approved-actions topics emptied,
    the same worker restarted, then a worker with no local state (restored from the
    changelog), answer `GET /api/v1/decisions/...` as the deciding worker did."""
    worker.extra_env.update(TOWER_RUNTIME=runtime, TOWER_POLICY_FILE=str(SHOWCASE))
    worker.start()
    url = f"http://127.0.0.1:{worker.web_port}"
    owners([worker])
    customer = "cust-kept-1"
    consent = {
        "customer_id": customer,
        "agent": "crm",
        "department": "system",
        "signal": {
            "type": "consent_changed",
            "attributes": {"channel": "all", "purpose": "all", "granted": "true"},
        },
    }
    status, _ = call(f"{url}/api/v1/signals?wait=20", json.dumps(consent).encode())
    assert status == 200
    decided = []
    for i in range(3):
        body = json.dumps(answer(customer, agent="care-bot", event_id=f"kept-{i}")).encode()
        status, first = call(f"{url}/api/v1/proposals?wait=20", body)
        assert status == 200 and first["status"] == "decided", first
        decided.append(first)
    assert decided[0]["outcome"] == "approved" and decided[0]["action"], decided[0]
    t = tower_settings.topics
    worker.stop()
    delete_records(tower_settings, [t.audit, t.approved])

    (tmp_path / "fresh").mkdir()
    fresh = WorkerProcess(tower_settings, tmp_path / "fresh", tmp_path / "fresh" / "worker")
    fresh.extra_env.update(worker.extra_env)
    try:
        for w in (worker, fresh):  # restarted, then with no local state at all
            w.start()
            owners([w])
            for first in decided:
                path = f"/api/v1/decisions/{first['event_id']}?customer_id={customer}"
                status, body = call(f"http://127.0.0.1:{w.web_port}{path}")
                assert status == 200, body
                assert {**body, "served_by": None} == {**first, "served_by": None}
            w.stop()
    finally:
        fresh.stop()
