"""A secured broker (`tower kafka up --secure`): SASL_SSL with SCRAM-SHA-512 and ACLs per role.

Each role does its job and nothing else; only the workers write the audit and nobody deletes
it or changes its configs; plaintext and a wrong password are refused; both runtimes
reconcile end to end over SASL_SSL; the password never shows in logs, pages, config files or
command lines.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from pipeline.contracts.codec import decode_record
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.kafka import clients
from pipeline.kafka.topics import broker_answers, create_topics
from pipeline.ops.cli import main
from pipeline.ops.local_kafka import LocalKafka
from pipeline.ops.local_security import password_file
from pipeline.ops.policy.governance import publish_policy
from pipeline.ops.policy.policy_topic import read_policies
from pipeline.ops.simulator import AgentSimulator
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings, TopicNames
from tests.conftest import WorkerProcess
from tests.integration.test_pipeline_end_to_end import expected_decisions, outputs
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("TOWER_TEST_SECURE_KAFKA_PORT", "29700"))
POLICY = "version: 2.0.0-secure\ncaps: []\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    b = LocalKafka(
        port=PORT, run_dir=tmp_path_factory.mktemp("secure-kafka"), out=sys.stderr, secure=True
    )
    b.up(wait_s=120)
    try:
        yield b
    finally:
        b.down()


@pytest.fixture
def deployment(broker: LocalKafka, tmp_path: Path) -> Settings:
    """Topics of this test, created by the `tower` role after the roles got their ACLs."""
    tag = uuid.uuid4().hex[:8]
    names = TopicNames(**{f: f"s{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    base = Settings(app_id=f"tower-{tag}", partitions=4, data_dir=tmp_path / "worker", topics=names)
    broker.grant_roles(names, base.app_id)
    settings = broker.material.settings(broker.bootstrap, "tower", base)
    create_topics(settings).raise_for_problems()
    return settings


def as_role(broker: LocalKafka, deployment: Settings, role: str) -> Settings:
    return broker.material.settings(broker.bootstrap, role, deployment)


def delivery_errors(
    settings: Settings, topic: str, idempotent: bool = True
) -> list[KafkaError | None]:
    """Without idempotence a role that may write nowhere learns which topic it may not
    write, instead of failing at once on the cluster's IdempotentWrite."""
    producer = clients.producer(
        settings, **{"message.timeout.ms": 10_000, "enable.idempotence": idempotent}
    )
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"{}", b"k", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    return errors


def read_error(settings: Settings, topic: str, group: str | None = None) -> KafkaError | None:
    """The first error reading `topic` gives (as a member of `group`, or assigned to its
    partitions without a group), None if it reads without one."""
    if group is None:
        consumer = clients.reader(settings, "refusal-check")
        # an assigned reader is not told on poll(): the topic's metadata says why
        refused = consumer.list_topics(topic, timeout=5).topics[topic].error
        if refused is not None:
            consumer.close()
            return refused
        consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    else:
        consumer = clients.group_consumer(
            settings, group, **{"auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
        consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                return msg.error()
        # an assigned reader is not told on poll(): the topic's metadata says why it got nothing
        return consumer.list_topics(topic, timeout=5).topics[topic].error
    finally:
        consumer.close()


def test_each_role_does_its_job(broker: LocalKafka, deployment: Settings) -> None:
    t = deployment.topics
    assert delivery_errors(as_role(broker, deployment, "agent"), t.events) == [None]
    assert delivery_errors(deployment, t.approved) == [None]  # the tower writes actions
    channel = as_role(broker, deployment, "channel")
    assert read_error(channel, t.approved, f"channel-{uuid.uuid4().hex[:6]}") is None
    assert delivery_errors(deployment, t.audit) == [None]  # the tower writes the audit
    auditor = as_role(broker, deployment, "auditor")
    reader = clients.reader(auditor, "audit-check")
    reader.assign([TopicPartition(t.audit, p, 0) for p in range(deployment.partitions)])
    seen = [m for m in reader.consume(100, 10) if m.error() is None]
    reader.close()
    assert seen, "the auditor reads the audit"


def test_the_policy_author_publishes_a_policy_but_writes_no_audit_record(
    broker: LocalKafka, deployment: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy comes into force; its `policy_changed` record, the CLI's own write to the
    audit, is refused (only the workers write it: each audits the change as
    `policy_applied`), and the CLI says so instead of failing."""
    author = as_role(broker, deployment, "policy-author")
    publish_policy(author, POLICY, "test", "ana")
    assert "only the workers may" in capsys.readouterr().err
    in_force = read_policies(as_role(broker, deployment, "auditor")).in_force
    assert in_force.policy_version.startswith("2.0.0-secure")


@pytest.mark.parametrize(
    ("role", "action", "topic"),
    [
        ("agent", "write", "approved"),  # an agent cannot bypass the tower
        ("agent", "write", "policies"),
        ("channel", "read", "events"),
        ("channel", "write", "approved"),
        ("auditor", "read", "events"),
        ("policy-author", "read", "approved"),
        ("policy-author", "write", "audit"),  # no forged timeline entries
        ("policy-author", "write", "events"),
        ("topic-admin", "write", "audit"),
        ("topic-admin", "write", "policies"),
    ],
)
def test_a_role_is_refused_what_it_is_not_for(
    broker: LocalKafka, deployment: Settings, role: str, action: str, topic: str
) -> None:
    settings = as_role(broker, deployment, role)
    name = getattr(deployment.topics, topic)
    assert delivery_errors(broker.client_settings, name) == [None]  # something to read
    if action == "write":
        [err] = delivery_errors(settings, name, idempotent=False)
    else:
        # a channel reads as its consumer group; the others with the tools' readers
        group = f"channel-{uuid.uuid4().hex[:6]}" if role == "channel" else None
        err = read_error(settings, name, group)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def decisions_on_the_topics(deployment: Settings) -> list[dict]:
    """What a worker would have written for a few customers, written as the `tower` role
    (the audit records and approved actions the roles' commands read); the audit records."""
    records = AgentSimulator(customers=4, seed=7).records(60, malformed=0)
    inputs = [InputRecord(r.key, r.value, 0, i, 1_000 + i) for i, r in enumerate(records)]
    decided = BatchProcessor(deployment, policy=lambda: DEFAULT_POLICY, clock=lambda: 1.0)
    outputs = decided.process(inputs, DictStateStore()).outputs
    producer = clients.producer(deployment)
    for o in outputs:
        producer.produce(o.topic, o.value, o.key, partition=o.partition)
    assert producer.flush(30) == 0
    return [
        decode_record("audit_record", o.value)
        for o in outputs
        if o.topic == deployment.topics.audit
    ]


def tower_as(broker: LocalKafka, deployment: Settings, role: str, *args: str) -> Any:
    """`tower ARGS` with the role's settings, given as a worker's would be (`to_env`)."""
    env = as_role(broker, deployment, role).to_env()
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_each_role_runs_the_commands_it_is_for(
    broker: LocalKafka, deployment: Settings, tmp_path: Path
) -> None:
    """The roles table's "what for" column, command by command, over SASL_SSL with the
    ACLs: the auditor explains a decision (from the audit: the action's own record is on
    approved-actions, which it may not read), replays it and reports; the policy author
    publishes and shows; the topic admin creates the topics."""
    audits = decisions_on_the_topics(deployment)
    approved = next(a for a in audits if a["outcome"] == "approved")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    commands = [
        ("auditor", ["audit", approved["customer_id"]], approved["decision_id"]),
        ("auditor", ["explain", approved["decision_id"]], approved["action_id"]),
        ("auditor", ["explain", approved["decision_id"]], "without the action as sent"),
        ("auditor", ["replay", approved["decision_id"]], "match"),
        ("auditor", ["report"], ""),
        ("policy-author", ["policy", "publish", str(policy), "--by", "ana"], "2.0.0-secure"),
        ("policy-author", ["policy", "show"], "2.0.0-secure"),
        ("topic-admin", ["topics", "create"], deployment.topics.audit),
    ]
    for role, args, shown in commands:
        result = tower_as(broker, deployment, role, *args)
        assert result.exit_code == 0 and shown in result.output, (role, args, result.output)
    # a role without the grant is told which topic it may not read, not that it is missing
    refused = tower_as(broker, deployment, "channel", "audit", approved["customer_id"])
    assert refused.exit_code == 1, refused.output
    assert f"user 'channel' may not read topic '{deployment.topics.audit}'" in refused.output


def test_plaintext_and_a_wrong_password_are_refused(
    broker: LocalKafka, deployment: Settings
) -> None:
    assert not broker_answers(Settings(bootstrap=broker.bootstrap), timeout=5)
    wrong = replace(as_role(broker, deployment, "agent"), sasl_password="not-the-password")
    assert not broker_answers(wrong, timeout=5)
    errors: list[KafkaError] = []
    producer = clients.producer(wrong, error_cb=errors.append)
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert "not-the-password" not in str(errors[0])


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_both_runtimes_reconcile_over_sasl_ssl(
    broker: LocalKafka, deployment: Settings, tmp_path: Path, runtime: str
) -> None:
    records = AgentSimulator(customers=30, seed=19).records(600, malformed=10)
    valid = [r for r in records if r.event is not None]
    expected = {d.action_id for d in expected_decisions(records) if d.action_id}
    worker = WorkerProcess(deployment, tmp_path, tmp_path / "worker")
    env = broker.material.env("tower")
    password = env.pop("TOWER_SASL_PASSWORD")
    env["TOWER_SASL_PASSWORD_FILE"] = str(password_file(broker.material, "tower"))
    worker.extra_env.update(env, TOWER_RUNTIME=runtime, TOWER_WEB_PORT=str(worker.web_port))
    worker.start()
    try:
        agent = as_role(broker, deployment, "agent")
        produce(agent, deployment.topics.events, [(r.key, r.value) for r in records])
        seen = consume_until(
            broker.client_settings,  # the admin reads every output topic
            outputs(deployment),
            lambda s: len(s["audit"]) >= len(valid) and len(s["deadletter"]) >= 10,
            timeout=180,
        )
        approved = Counter(a.value["action_id"] for a in seen["approved"])
        assert set(approved) == expected
        if runtime == "transactional":
            assert max(approved.values()) == 1
        pages = [
            _get(f"http://127.0.0.1:{worker.web_port}{path}")
            for path in ("/healthz", "/metrics", f"/customers/{valid[0].event.customer_id}")
        ]
    finally:
        worker.stop()
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    for text in [logs, *pages]:
        assert password not in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode(errors="replace")


def admin_error(settings: Settings, action: str, topic: str) -> KafkaError | None:
    """The error of one admin request on `topic` as `settings`' user, None if it succeeds."""
    admin = clients.admin(settings)
    if action == "delete":
        futures = admin.delete_topics([topic], request_timeout=15)
    elif action == "retention":
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
            ],
        )
        futures = admin.incremental_alter_configs([resource], request_timeout=15)
    elif action == "partitions":
        futures = admin.create_partitions([NewPartitions(topic, 8)], request_timeout=15)
    else:
        assert action == "create"
        futures = admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)
    try:
        for future in futures.values():
            future.result()
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        return err
    return None


@pytest.mark.parametrize("role", ["topic-admin", "policy-author", "tower"])
@pytest.mark.parametrize("action", ["delete", "retention", "partitions"])
def test_nobody_deletes_the_audit_or_changes_its_retention(
    broker: LocalKafka, deployment: Settings, role: str, action: str
) -> None:
    err = admin_error(as_role(broker, deployment, role), action, deployment.topics.audit)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_the_topic_admin_manages_every_other_topic(
    broker: LocalKafka, deployment: Settings
) -> None:
    admin = as_role(broker, deployment, "topic-admin")
    scratch = f"{deployment.topics.events}-scratch"
    for action in ("create", "retention", "partitions", "delete"):
        assert admin_error(admin, action, scratch) is None, action
    assert admin_error(admin, "retention", deployment.topics.events) is None


def test_no_secret_is_in_the_broker_config_or_on_a_command_line(broker: LocalKafka) -> None:
    material = broker.material
    config = broker.config_path.read_text()
    assert "PRIVATE KEY" not in config
    status = broker.status()
    assert status.pid is not None
    cmdline = Path(f"/proc/{status.pid}/cmdline").read_bytes().decode(errors="replace")
    for password in material.passwords.values():
        assert password not in config
        assert password not in cmdline
    for path in (broker.config_path, material.key_file, material.password_file("admin")):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert broker.run_dir.stat().st_mode & 0o777 == 0o700
    assert not (broker.run_dir / "format.args").exists()
