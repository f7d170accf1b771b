"""The local broker lifecycle and topic creation against a real Kafka, on ports of its own.

Uses 19192/19193 and a run dir under tmp_path so it never touches a developer's broker on 9092.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from pipeline.kafka import clients
from pipeline.kafka.topics import create_topics, delete_topics, topic_specs
from pipeline.ops.local_kafka import LocalKafka
from pipeline.settings import Settings
from tests import tools

PORT, CONTROLLER_PORT = 19192, 19193

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    if shutil.which("java") is None:
        tools.missing("needs Java 17+ on PATH")
    broker = LocalKafka(
        port=PORT, controller_port=CONTROLLER_PORT, run_dir=tmp_path / "kafka", out=io.StringIO()
    )
    if not broker._jars_present() and shutil.which("mvn") is None:
        tools.missing("needs the Kafka jars cached or mvn on PATH")
    try:
        yield broker
    finally:
        broker.down()
        assert not broker.status().running


def test_lifecycle_and_topics(kafka: LocalKafka) -> None:
    st = kafka.up(wait_s=90)
    assert st.running and st.pid and st.bootstrap == f"127.0.0.1:{PORT}"
    assert (kafka.run_dir / "data" / "meta.properties").exists()
    assert kafka.log_path.exists() and list(kafka.logs(lines=5))

    again = kafka.up(wait_s=10)
    assert again.pid == st.pid
    assert "already running" in kafka.out.getvalue()  # type: ignore[union-attr]

    settings = Settings(bootstrap=kafka.bootstrap)
    delete_topics(settings)  # the run dir is fresh, but be robust to reuse
    report = create_topics(settings)
    assert report.ok, report.lines()
    names = [s.name for s in topic_specs(settings)]  # the six and the state changelog
    assert {r.name: r.status for r in report.results} == dict.fromkeys(names, "created")

    admin = clients.admin(kafka.client_settings)  # keep a reference: futures die with their client
    md = admin.list_topics(timeout=10)
    counts = {name: len(md.topics[name].partitions) for name in settings.topics.all()}
    assert counts == {
        "agent-events": 8,
        "tower-wakeups": 8,
        "approved-actions": 8,
        "audit": 8,
        "deadletter": 8,
        "policies": 1,
    }
    res = ConfigResource(ConfigResource.Type.TOPIC, "policies")
    cfg = admin.describe_configs([res])[res].result()
    assert cfg["cleanup.policy"].value == "compact"

    again_report = create_topics(settings)
    assert again_report.ok
    assert {r.status for r in again_report.results} == {"exists"}

    wrong = create_topics(settings, partitions=4)
    assert not wrong.ok
    assert {p.name for p in wrong.problems} == set(names) - {"policies"}
    assert all(p.actual_partitions == 8 and "--partitions 8" in p.detail for p in wrong.problems)

    assert sorted(delete_topics(settings)) == sorted(names)
    assert create_topics(settings, partitions=4).ok

    assert kafka.status().running
    assert kafka.down() is True
    st = kafka.status()
    assert not st.running and st.pid is None
    assert kafka.down() is False  # idempotent


def test_restart_keeps_cluster(kafka: LocalKafka) -> None:
    kafka.up(wait_s=90)
    meta = (kafka.run_dir / "data" / "meta.properties").read_text()
    settings = Settings(bootstrap=kafka.bootstrap)
    assert create_topics(settings).ok
    kafka.down()
    kafka.up(wait_s=90)
    assert (kafka.run_dir / "data" / "meta.properties").read_text() == meta
    assert {r.status for r in create_topics(settings).results} == {"exists"}


def test_the_replication_factor_is_the_brokers_unless_set(tower_settings) -> None:
    from dataclasses import replace

    from pipeline.kafka.topics import replication_factor

    assert replication_factor(tower_settings) == 1  # the single test broker's default
    assert replication_factor(replace(tower_settings, replication_factor=3)) == 3
