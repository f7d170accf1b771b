"""Schema registry framing on the real broker, both runtimes: input written by confluent-kafka's
AvroSerializer (Java's KafkaAvroSerializer framing) is decided, unknown ids and incompatible
schemas are dead-lettered with their reasons, TOWER_OUTPUT_FORMAT=registry-avro output reads
back with AvroDeserializer, and a registry outage holds records back instead of losing them.

The registry is a real one, Apicurio Registry's Confluent-compatible API (the session's
`schema_registry`); the outage test stops and restarts tests/registry_standin.py instead,
since it needs the same schemas back on the same port, which a restarted in-memory
registry no longer has."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.contracts.events import AgentEvent, Proposal, Signal, event_to_dict
from tests.conftest import REPO, free_port
from tests.kafka_io import produce
from tests.registry_server import RegistryServer
from tests.registry_standin import StandInRegistry

pytestmark = pytest.mark.integration

RUNTIMES = ["faust", "transactional"]
PROPOSAL = AgentEvent(
    event_id="evt-1",
    customer_id="cust-42",
    occurred_at=1_700_000_000_000,
    kind="proposal",
    agent="upsell-bot",
    department="sales",
    channel="email",
    proposal=Proposal(action="message", category="service", priority=70, content="Hi"),
)
SIGNAL = AgentEvent(
    event_id="evt-3",
    customer_id="cust-42",
    occurred_at=1_700_000_000_001,
    kind="signal",
    agent="crm",
    department="service",
    signal=Signal(type="case_opened", attributes={"case_id": "C-1"}),
)
AGENT = orjson.loads((REPO / "schemas" / "agent_event.avsc").read_bytes())


def _schema(fields: list[dict[str, Any]]) -> str:
    return orjson.dumps({**AGENT, "fields": fields}).decode()


#: a producer one schema revision ahead: a field the tower does not know, with a default
NEWER = _schema([*AGENT["fields"], {"name": "locale", "type": "string", "default": "en"}])
#: occurred_at as a string: no reader on agent_event.avsc can resolve it
INCOMPATIBLE = _schema(
    [dict(f, type="string") if f["name"] == "occurred_at" else f for f in AGENT["fields"]]
)


@pytest.fixture
def registry(schema_registry: RegistryServer) -> RegistryServer:
    return schema_registry


def serialize(url: str, topic: str, schema: str, record: dict[str, Any]) -> bytes:
    serializer = AvroSerializer(SchemaRegistryClient({"url": url}), schema)
    value = serializer(record, SerializationContext(topic, MessageField.VALUE))
    assert value is not None and value[:1] == b"\x00"
    return value


def read_raw(
    bootstrap: str, topics: dict[str, str], done: Any, timeout: float = 120.0, settle: float = 0
) -> dict:
    """{role: [(key, value bytes)]} read from the start until `done(seen)`, and `settle`
    seconds more."""
    by_topic = {t: r for r, t in topics.items()}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"registry-test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe(list(topics.values()))
    seen: dict[str, list[tuple[bytes | None, bytes]]] = {r: [] for r in topics}
    deadline = time.monotonic() + timeout
    until: float | None = None
    try:
        while until is None or time.monotonic() < until:
            if time.monotonic() > deadline:
                raise TimeoutError({r: len(v) for r, v in seen.items()})
            for msg in consumer.consume(100, 0.5):
                if not msg.error():
                    seen[by_topic[msg.topic()]].append((msg.key(), msg.value()))
            if until is None and done(seen):
                until = time.monotonic() + settle
    finally:
        consumer.close()
    return seen


def outputs(settings: Any) -> dict[str, str]:
    t = settings.topics
    return {"approved": t.approved, "audit": t.audit, "deadletter": t.deadletter}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_registry_framed_input_and_output(tower_settings, worker, registry, runtime):
    t = tower_settings.topics
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_SCHEMA_REGISTRY_URL=registry.url,
        TOWER_OUTPUT_FORMAT="registry-avro",
    )
    proposal = {**event_to_dict(PROPOSAL), "locale": "de"}
    newer = serialize(registry.url, t.events, NEWER, proposal)
    registry.set_compatibility(f"{t.events}-value", "NONE")  # lets the bad one in
    incompatible = serialize(
        registry.url, t.events, INCOMPATIBLE, {**event_to_dict(SIGNAL), "occurred_at": "now"}
    )
    unknown = b"\x00" + (9999).to_bytes(4, "big") + newer[5:]  # an id nobody registered
    signal = event_to_dict(SIGNAL)
    produce(
        tower_settings.bootstrap,
        t.events,
        [
            (b"cust-42", newer),
            (b"cust-42", unknown),
            (b"cust-42", incompatible),
            (b"cust-42", orjson.dumps(signal)),
        ],
    )
    worker.start()
    seen = read_raw(
        tower_settings.bootstrap,
        outputs(tower_settings),
        lambda s: len(s["audit"]) >= 2 and len(s["deadletter"]) >= 2,
    )
    client = SchemaRegistryClient({"url": registry.url})
    read = AvroDeserializer(client)

    def records(role: str, topic: str) -> list[dict[str, Any]]:
        ctx = SerializationContext(topic, MessageField.VALUE)
        return [read(value, ctx) for _, value in seen[role]]

    audit = records("audit", t.audit)
    dead = records("deadletter", t.deadletter)
    approved = records("approved", t.approved)
    assert sorted(a["event_id"] for a in audit) == sorted([PROPOSAL.event_id, SIGNAL.event_id])
    assert {a["source_offset"] for a in audit} == {0, 3}
    assert sorted(d["reason"] for d in dead) == ["incompatible_schema", "unknown_schema_id"]
    assert any("9999" in d["detail"] for d in dead)
    for action in approved:
        assert action["customer_id"] == "cust-42"
    subjects = registry.subjects()
    assert {f"{t.approved}-value", f"{t.audit}-value", f"{t.deadletter}-value"} <= subjects
    # the tower's own tools read it too
    from pipeline.contracts.codec import decode_record
    from pipeline.kafka.schema_registry import lookup_for
    from pipeline.settings import Settings

    lookup = lookup_for(Settings(schema_registry_url=registry.url))
    assert decode_record("audit_record", seen["audit"][0][1], lookup)["event_id"] in {
        PROPOSAL.event_id,
        SIGNAL.event_id,
    }


def test_output_schemas_register_once_and_a_refusing_rule_stops_the_start(tower_settings, registry):
    from pipeline.kafka.schema_registry import RegistryClient, RegistryStartError, register_outputs

    settings = replace(
        tower_settings, schema_registry_url=registry.url, output_format="registry-avro"
    )
    ids = register_outputs(RegistryClient(settings), settings)
    assert register_outputs(RegistryClient(settings), settings) == ids  # the same ids again
    assert registry.latest_id(f"{settings.topics.audit}-value") == ids["audit_record"]
    # a subject that already holds another record, under the registry's own FULL rule
    other = replace(settings, topics=replace(settings.topics, audit=f"{settings.topics.audit}-x"))
    subject = f"{other.topics.audit}-value"
    registry.register(subject, '{"type":"record","name":"Other","fields":[]}')
    registry.set_compatibility(subject, "FULL")
    with pytest.raises(RegistryStartError) as info:
        register_outputs(RegistryClient(other), other)
    assert subject in str(info.value) and "\n" not in str(info.value)


def waiting(worker) -> float:
    for line in worker.metrics_text().splitlines():
        if line.startswith("tower_schema_registry_waiting_records "):
            return float(line.split()[1])
    return -1.0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_records_wait_while_the_registry_is_down(tower_settings, worker, runtime):
    t = tower_settings.topics
    port = free_port()
    registry = StandInRegistry(port).start()
    try:
        value = serialize(registry.url, t.events, NEWER, {**event_to_dict(PROPOSAL)})
        worker.extra_env.update(TOWER_RUNTIME=runtime, TOWER_SCHEMA_REGISTRY_URL=registry.url)
        worker.start()
        worker.metrics_text(timeout=60)  # up
        registry.stop()
        produce(tower_settings.bootstrap, t.events, [(b"cust-42", value)])
        deadline = time.monotonic() + 90
        while waiting(worker) != 1.0:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        errors = [
            line
            for line in worker.metrics_text().splitlines()
            if line.startswith("tower_schema_registry_errors_total")
        ]
        assert errors and float(errors[0].split()[1]) >= 1
        nothing = read_raw(
            tower_settings.bootstrap, outputs(tower_settings), lambda s: True, settle=3
        )
        assert nothing == {"approved": [], "audit": [], "deadletter": []}
        registry.start()  # same port, same schemas
        seen = read_raw(
            tower_settings.bootstrap, outputs(tower_settings), lambda s: len(s["audit"]) >= 1
        )
        assert seen["deadletter"] == []
        assert waiting(worker) == 0.0
    finally:
        registry.stop()


def test_registry_avro_output_refuses_to_start_without_the_registry(tower_settings, worker):
    worker.extra_env.update(
        TOWER_OUTPUT_FORMAT="registry-avro",
        TOWER_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{free_port()}",
        TOWER_POLICY_WAIT_S="0.5",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.ops.cli", "worker"],
        env=worker.env(),
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode != 0
    err = done.stderr.decode().strip().splitlines()
    assert err[-1].startswith("Error: cannot register the output schemas: schema registry ")
    assert "Traceback" not in done.stderr.decode()
