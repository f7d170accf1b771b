"""`TowerClient` without a broker: nothing is produced for a bad event, and HTTP statuses
map to the documented errors (against a scripted local server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from pipeline.client import (
    DecisionTimeout,
    InvalidProposal,
    TowerClient,
    TowerError,
    TowerUnavailable,
    UnknownCustomer,
    make_proposal,
)
from pipeline.client.tower_client import _retry_after
from pipeline.contracts.codec import decode_event, encode_event, encode_record
from pipeline.settings import TopicNames

T0 = 1_767_225_600_000
DRAFT: dict[str, Any] = {
    "agent": "winback-bot",
    "department": "marketing",
    "channel": "email",
    "action": "message",
    "category": "marketing",
}


# --- producing (Kafka replaced by recorders) -------------------------------------------


@dataclass
class KafkaStub:
    """Stands in for the client's Kafka calls: the audit end is 7, produces are kept."""

    produced: list[tuple[bytes, bytes, str]] = field(default_factory=list)

    def install(self, client: TowerClient, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(client, "_audit_partition", lambda key: 3)
        monkeypatch.setattr(client, "_watermarks", lambda partition: (0, 7))
        monkeypatch.setattr(client, "_produce", lambda k, v, e: self.produced.append((k, v, e)))


def test_propose_produces_the_checked_event_keyed_by_customer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, kafka = TowerClient(output_format="avro"), KafkaStub()
    kafka.install(client, monkeypatch)
    event_id = client.propose("cust-42", **DRAFT, content="Hi")
    [(key, value, produced_id)] = kafka.produced
    assert (key, produced_id) == (b"cust-42", event_id)
    assert value[:2] == b"\xc3\x01"  # Avro single-object encoding
    assert decode_event(key, value).event_id == event_id
    sent = client._sent[event_id]
    assert (sent.customer_id, sent.partition, sent.offset) == ("cust-42", 3, 7)


def test_signal_produces_json_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    client, kafka = TowerClient(), KafkaStub()
    kafka.install(client, monkeypatch)
    event_id = client.signal("cust-42", "case_opened", attributes={"case_id": "k-1"})
    [(_, value, _)] = kafka.produced
    assert json.loads(value)["signal"] == {"type": "case_opened", "attributes": {"case_id": "k-1"}}
    assert event_id in client._sent


def test_nothing_is_produced_for_an_invalid_proposal(monkeypatch: pytest.MonkeyPatch) -> None:
    client, kafka = TowerClient(), KafkaStub()
    kafka.install(client, monkeypatch)
    with pytest.raises(InvalidProposal):
        client.propose("cust-42", **{**DRAFT, "channel": "fax"})
    assert kafka.produced == [] and not client._sent


def test_waiting_for_an_unknown_event_needs_the_customer() -> None:
    with pytest.raises(TowerError, match="customer_id"):
        TowerClient().wait_decision("e-unknown", timeout_s=0.1)


def test_a_wait_that_finds_nothing_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    client, kafka = TowerClient(), KafkaStub()
    kafka.install(client, monkeypatch)
    monkeypatch.setattr(client, "_read_until", lambda sent, event_id, deadline: None)
    event_id = client.propose("cust-42", **DRAFT)
    with pytest.raises(DecisionTimeout) as caught:
        client.wait_decision(event_id, timeout_s=0.1)
    assert caught.value.event_id == event_id


class FakeMessage:
    def __init__(self, offset: int, key: bytes, record: dict[str, Any] | None) -> None:
        self._offset, self._key = offset, key
        self._value = b"" if record is None else encode_record("audit_record", record, "avro")

    def error(self) -> None:
        return None

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


class FakeReader:
    """The audit partition as a list of messages, consumed from the assigned offset."""

    def __init__(self, messages: list[FakeMessage]) -> None:
        self.messages, self.position = messages, 0
        self.assigned: list[tuple[str, int]] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append((partitions[0].topic, partitions[0].partition))
        self.position = partitions[0].offset

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        out = [m for m in self.messages if m.offset() >= self.position][:2]
        if out:
            self.position = out[-1].offset() + 1
        else:
            time.sleep(timeout)
        return out

    def unassign(self) -> None:
        pass


def audit(event_id: str, outcome: str, customer: str = "cust-42") -> dict[str, Any]:
    return {
        "decision_id": "d-" + event_id,
        "event_id": event_id,
        "customer_id": customer,
        "kind": "proposal",
        "agent": "winback-bot",
        "department": "marketing",
        "outcome": outcome,
        "reason": outcome,
        "policy_version": "p-1",
        "decided_at": T0,
        "source_topic": "agent-events",
        "source_partition": 3,
        "source_offset": 1,
        "input": "{}",
        "processed_at": T0,
    }


def test_the_final_record_after_the_held_one_is_the_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, kafka = TowerClient(), KafkaStub()
    kafka.install(client, monkeypatch)
    event_id = client.propose("cust-42", **DRAFT, event_id="e-1")
    reader = FakeReader(
        [
            FakeMessage(6, b"cust-42", audit("e-1", "approved")),  # before the propose
            FakeMessage(7, b"cust-42", audit("e-1", "held")),
            FakeMessage(8, b"cust-7", audit("e-1", "approved", "cust-7")),  # another key
            FakeMessage(9, b"cust-42", None),  # not an audit record
            FakeMessage(10, b"cust-42", audit("e-2", "approved")),
            FakeMessage(11, b"cust-42", audit("e-1", "merged")),
        ]
    )
    monkeypatch.setattr(client, "_reader_", lambda: reader)
    assert client.wait_decision(event_id, timeout_s=2)["outcome"] == "merged"
    assert reader.assigned == [("audit", 3)]
    assert client._sent[event_id].offset == 11  # a second wait finds it again at once
    assert client.wait_decision(event_id, timeout_s=2)["outcome"] == "merged"


def test_an_event_of_another_client_is_looked_for_in_the_newest_offsets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, kafka = TowerClient(), KafkaStub()
    kafka.install(client, monkeypatch)
    monkeypatch.setattr(client, "_watermarks", lambda partition: (0, 5_002))
    reader = FakeReader(
        [
            FakeMessage(1, b"cust-42", audit("e-9", "suppressed")),  # older than 5,000
            FakeMessage(3, b"cust-42", audit("e-9", "approved")),
        ]
    )
    monkeypatch.setattr(client, "_reader_", lambda: reader)
    assert client.wait_decision("e-9", customer_id="cust-42", timeout_s=2)["outcome"] == (
        "approved"
    )


@dataclass
class FakeProducer:
    error: KafkaError | None
    calls: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    report: Any = None

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.calls.append((topic, key, value))
        self.report = on_delivery

    def poll(self, timeout: float) -> int:
        if self.report is not None:
            self.report(self.error, None)
            self.report = None
        return 0


def test_a_produce_waits_for_the_broker_and_raises_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TowerClient(topics=TopicNames(events="ev"))
    ok = FakeProducer(None)
    monkeypatch.setattr(client, "_producer_", lambda: ok)
    client._produce(b"cust-42", b"{}", "e-1")
    assert ok.calls == [("ev", b"cust-42", b"{}")]
    refused = FakeProducer(KafkaError(KafkaError._MSG_TIMED_OUT))
    monkeypatch.setattr(client, "_producer_", lambda: refused)
    with pytest.raises(TowerError, match=r"Message timed out; is Kafka up on 127\.0\.0\.1:9092"):
        client._produce(b"cust-42", b"{}", "e-1")


def test_an_unknown_topic_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TowerClient(topics=TopicNames(events="ev"))
    missing = FakeProducer(KafkaError(KafkaError._UNKNOWN_TOPIC))
    monkeypatch.setattr(client, "_producer_", lambda: missing)
    with pytest.raises(TowerError, match="set TOWER_TOPIC_EVENTS"):
        client._produce(b"cust-42", b"{}", "e-1")

    class NoTopics:
        def list_topics(self, topic: str, timeout: float) -> Any:
            return type("Meta", (), {"topics": {}})()

    monkeypatch.setattr(client, "_reader_", NoTopics)
    with pytest.raises(TowerError, match=r"'ev' does not exist.*set TOWER_TOPIC_EVENTS"):
        client._audit_partition(b"cust-42")


# --- settings from the environment -----------------------------------------------------


def test_every_setting_comes_from_the_environment() -> None:
    env = {
        "TOWER_BOOTSTRAP": "kafka-1:9092",
        "TOWER_TOPIC_EVENTS": "demo-agent-events",
        "TOWER_TOPIC_AUDIT": "demo-audit",
        "TOWER_WEB_PORT": "7001",
        "TOWER_TOKEN": "secret",
    }
    client = TowerClient(env=env)
    assert client.settings.bootstrap == "kafka-1:9092"
    assert (client.settings.topics.events, client.settings.topics.audit) == (
        "demo-agent-events",
        "demo-audit",
    )
    assert client.web_url == "http://127.0.0.1:7001" and client._token == "secret"
    # the worker's own URL, a URL for clients, and what the caller passes, in rising order
    worker = {**env, "TOWER_WEB_URL": "http://tower-0:6066/"}
    assert TowerClient(env=worker).web_url == "http://tower-0:6066"
    mine = {**worker, "TOWER_URL": "https://tower.example"}
    assert TowerClient(env=mine).web_url == "https://tower.example"
    given = TowerClient("b:1", "http://x:1", topics=TopicNames(events="e"), env=mine)
    assert (given.settings.bootstrap, given.web_url, given.settings.topics.events) == (
        "b:1",
        "http://x:1",
        "e",
    )
    # a worker binding every interface is called on this host
    assert TowerClient(env={"TOWER_WEB_HOST": "0.0.0.0"}).web_url == "http://127.0.0.1:6066"


def test_a_bad_setting_is_named() -> None:
    with pytest.raises(TowerError, match="TOWER_WEB_PORT='web' is not a valid int"):
        TowerClient(env={"TOWER_WEB_PORT": "web"})


def test_missing_fields_are_listed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    client, kafka = TowerClient(env={}), KafkaStub()
    kafka.install(client, monkeypatch)
    partial: Any = {"agent": "winback-bot", "department": "marketing", "action": "message"}
    for call in (client.propose, client.preflight):
        with pytest.raises(InvalidProposal) as caught:
            call("cust-42", **partial)
        assert (caught.value.reason, caught.value.field) == ("missing_field", "channel")
        assert "missing channel, category" in str(caught.value)
    with pytest.raises(InvalidProposal, match="unknown chanel") as caught:
        client.propose("cust-42", **DRAFT, chanel="email")  # type: ignore[call-arg]
    assert caught.value.reason == "unknown_field"
    assert kafka.produced == []


def test_only_json_or_avro() -> None:
    with pytest.raises(ValueError, match="output_format"):
        TowerClient(output_format="xml")  # type: ignore[arg-type]


# --- the web API against a scripted server ---------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None  # dict -> JSON; bytes as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Asked:
    method: str
    path: str
    content_type: str | None
    body: bytes


class ScriptedServer:
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.asked: list[Asked] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.asked.append(
                    Asked(
                        self.command,
                        self.path,
                        self.headers.get("Content-Type"),
                        self.rfile.read(length),
                    )
                )
                reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                body = reply.body
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


def client_of(web: ScriptedServer, timeout_s: float = 5.0) -> TowerClient:
    return TowerClient(web_url=web.url + "/", timeout_s=timeout_s)


CONTEXT = {"customer_id": "cust 42/x", "known": True, "consents": []}
PREFLIGHT = {
    "api_version": "v1",
    "advisory": True,
    "note": "advisory",
    "event_id": "e-1",
    "customer_id": "cust-42",
    "decision_id": "d-1",
    "outcome": "deferred",
    "rule": "quiet_hours",
    "reason": "quiet until 08:00",
    "trace": [{"rule": "quiet_hours", "verdict": "defer", "reason": "quiet until 08:00"}],
    "content": "Hi",
    "action": {"action_id": "a-1"},
    "policy_version": "p-1",
    "served_by": "http://127.0.0.1:6066",
}


def test_context_returns_the_json_of_the_quoted_customer(web: ScriptedServer) -> None:
    web.script(Reply(200, CONTEXT))
    assert client_of(web).context("cust 42/x") == CONTEXT
    assert client_of(web).context("cust 42/x", at=T0) == CONTEXT
    assert [a.path for a in web.asked] == [
        "/api/v1/customers/cust%2042%2Fx/context",
        f"/api/v1/customers/cust%2042%2Fx/context?at={T0}",
    ]
    assert web.asked[0].method == "GET"


def test_an_unknown_customer_carries_the_hint(web: ScriptedServer) -> None:
    web.script(Reply(404, {"error": "not known", "hint": "ask /api/v1/preflight"}))
    with pytest.raises(UnknownCustomer) as caught:
        client_of(web).context("cust-42")
    assert (caught.value.customer_id, caught.value.hint) == ("cust-42", "ask /api/v1/preflight")


def test_a_503_is_retried_after_its_retry_after(web: ScriptedServer) -> None:
    web.script(
        Reply(503, {"error": "rebalancing"}, {"Retry-After": "0.2"}),
        Reply(503, {"error": "rebalancing"}),  # no Retry-After: the default second
        Reply(200, CONTEXT),
    )
    started = time.monotonic()
    assert client_of(web).context("cust-42") == CONTEXT
    assert len(web.asked) == 3
    assert 1.1 <= time.monotonic() - started < 4


def test_a_503_past_the_timeout_raises_unavailable(web: ScriptedServer) -> None:
    web.script(Reply(503, {"error": "rebalancing"}, {"Retry-After": "1"}))
    started = time.monotonic()
    with pytest.raises(TowerUnavailable) as caught:
        client_of(web, timeout_s=0.5).context("cust-42")
    assert time.monotonic() - started < 0.5  # no pointless wait
    assert (caught.value.retry_after_s, caught.value.detail) == (1.0, "rebalancing")


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, b"Internal Server Error"),
        Reply(200, b"<html>not json</html>"),
        Reply(200, [1, 2]),
        Reply(404, b"404: Not Found"),  # a server without the v1 API
        Reply(400, {"error": "at must be epoch milliseconds"}),  # no reason: not ours
    ],
)
def test_other_answers_are_tower_errors(web: ScriptedServer, reply: Reply) -> None:
    web.script(reply)
    with pytest.raises(TowerError) as caught:
        client_of(web).context("cust-42")
    assert type(caught.value) is TowerError


def test_an_unreachable_tower_is_a_tower_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TowerError, match="cannot reach"):
        TowerClient(web_url=f"http://127.0.0.1:{port}", timeout_s=1).context("cust-42")


def test_preflight_posts_the_event_json_and_reads_the_answer(web: ScriptedServer) -> None:
    web.script(Reply(200, PREFLIGHT))
    answer = client_of(web).preflight(
        "cust-42", **DRAFT, content="Hi", event_id="e-1", occurred_at=T0
    )
    [asked] = web.asked
    assert (asked.method, asked.path, asked.content_type) == (
        "POST",
        "/api/v1/preflight",
        "application/json",
    )
    event = make_proposal("cust-42", **DRAFT, content="Hi", event_id="e-1", occurred_at=T0)
    assert asked.body == encode_event(event, "json")
    assert answer.outcome == "deferred" and answer.approved
    assert (answer.rule, answer.decision_id, answer.policy_version) == ("quiet_hours", "d-1", "p-1")
    assert answer.trace[0].verdict == "defer"
    assert answer.action == {"action_id": "a-1"} and answer.content == "Hi"


def test_preflight_takes_a_prepared_event(web: ScriptedServer) -> None:
    web.script(Reply(200, PREFLIGHT))
    event = make_proposal("cust-42", **DRAFT, event_id="e-1", occurred_at=T0)
    client_of(web).preflight(event)
    assert web.asked[0].body == encode_event(event, "json")
    with pytest.raises(TypeError):
        client_of(web).preflight(event, priority=3)  # type: ignore[call-overload]


def test_preflight_400_is_an_invalid_proposal(web: ScriptedServer) -> None:
    web.script(
        Reply(
            400,
            {"error": "a signal", "reason": "not_a_proposal", "detail": "preflight judges..."},
        )
    )
    with pytest.raises(InvalidProposal) as caught:
        client_of(web).preflight("cust-42", **DRAFT)
    assert (caught.value.reason, caught.value.detail) == ("not_a_proposal", "preflight judges...")


def test_preflight_maps_404_and_503_as_context_does(web: ScriptedServer) -> None:
    web.script(Reply(404, {"error": "gone", "hint": "try later"}))
    with pytest.raises(UnknownCustomer):
        client_of(web).preflight("cust-42", **DRAFT)
    web.script(Reply(503, {"error": "starting"}, {"Retry-After": "5"}))
    with pytest.raises(TowerUnavailable):
        client_of(web, timeout_s=0.2).preflight("cust-42", **DRAFT)


def test_an_invalid_preflight_never_reaches_the_server(web: ScriptedServer) -> None:
    web.script(Reply(200, PREFLIGHT))
    with pytest.raises(InvalidProposal):
        client_of(web).preflight("cust-42", **{**DRAFT, "category": "gossip"})
    assert web.asked == []


def test_a_preflight_answer_without_an_outcome_is_a_tower_error(web: ScriptedServer) -> None:
    web.script(Reply(200, {k: v for k, v in PREFLIGHT.items() if k != "outcome"}))
    with pytest.raises(TowerError, match="unexpected preflight answer"):
        client_of(web).preflight("cust-42", **DRAFT)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("2") == 2.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = _retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 28 <= later <= 31
    assert _retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0
