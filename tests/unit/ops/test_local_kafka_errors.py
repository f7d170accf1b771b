"""The local broker's failures must say what to do, before anything slow happens."""

from __future__ import annotations

import io
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.kafka.topics import TopicsError, topic_specs, wait_for_broker
from pipeline.ops import local_kafka
from pipeline.ops.kafka_commands import kafka_group
from pipeline.ops.local_kafka import LocalKafka, LocalKafkaError
from pipeline.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[int]:
    """A plain TCP server that accepts and never speaks Kafka."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


def _broker(tmp_path: Path, port: int | None = None) -> LocalKafka:
    port = port or _free_port()
    return LocalKafka(
        cache_dir=tmp_path / "cache",
        port=port,
        controller_port=_free_port(),
        run_dir=tmp_path / "run",
        out=io.StringIO(),
    )


def _without(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    real = shutil.which
    monkeypatch.setattr(
        local_kafka.shutil, "which", lambda name, *a, **k: None if name == missing else real(name)
    )


def test_java_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "java")
    with pytest.raises(LocalKafkaError, match=r"Java is not on PATH.*Install a JDK"):
        _broker(tmp_path).up(wait_s=1)


def test_mvn_missing_when_jars_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "mvn")
    broker = _broker(tmp_path)
    with pytest.raises(LocalKafkaError, match=r"Maven \(mvn\) is not on PATH.*Install Maven"):
        broker.ensure_jars()
    assert not broker.libs_dir.exists()


def test_mvn_failure_shows_its_last_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mvn"
    fake.write_text(
        "#!/bin/sh\necho '[ERROR] Could not resolve org.apache.kafka:kafka_2.13'\nexit 1\n"
    )
    fake.chmod(0o755)
    real = shutil.which
    monkeypatch.setattr(
        local_kafka.shutil,
        "which",
        lambda name, *a, **k: str(fake) if name == "mvn" else real(name),
    )
    broker = _broker(tmp_path)
    with pytest.raises(LocalKafkaError, match=r"(?s)exit 1.*Could not resolve org.apache.kafka"):
        broker.ensure_jars()
    assert not broker.libs_dir.exists()
    assert [p.name for p in broker.libs_dir.parent.iterdir()] == ["mvn.log"]  # no half cache


def test_port_taken_by_something_else(tmp_path: Path, listener: int) -> None:
    with pytest.raises(LocalKafkaError, match=rf"port {listener} is already in use.*--port"):
        _broker(tmp_path, port=listener).up(wait_s=1)


def test_controller_port_taken(tmp_path: Path, listener: int) -> None:
    broker = LocalKafka(
        cache_dir=tmp_path, port=_free_port(), controller_port=listener, out=io.StringIO()
    )
    with pytest.raises(LocalKafkaError, match=rf"controller port {listener}"):
        broker.up(wait_s=1)


def test_down_and_status_when_never_started(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    assert broker.down() is False
    st = broker.status()
    assert not st.running and st.pid is None


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.run_dir.mkdir(parents=True)
    broker.pid_file.write_text("1\n")  # init: alive, but not our broker
    assert not broker.status().running


def test_controller_port_follows_a_custom_port() -> None:
    assert LocalKafka(port=9092).controller_port == 9093
    assert LocalKafka(port=19192).controller_port == 19193
    settings = Settings.from_env({"TOWER_KAFKA_PORT": "19500"})
    assert LocalKafka.from_settings(settings).controller_port == 19501


def test_cli_errors_are_one_line(
    tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWER_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(kafka_group, ["up", "--port", str(listener)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"error: port {listener} is already in use" in result.output

    status = CliRunner().invoke(kafka_group, ["status", "--port", str(_free_port())])
    assert status.exit_code == 1 and "stopped" in status.output


def test_wait_for_broker_times_out_clearly() -> None:
    with pytest.raises(TopicsError, match=r"no Kafka broker answered.*tower kafka up"):
        wait_for_broker(Settings(bootstrap=f"127.0.0.1:{_free_port()}"), timeout=1)


def test_topic_specs() -> None:
    specs = {s.name: s for s in topic_specs(Settings(partitions=6))}
    assert specs["tower-wakeups"].partitions == specs["agent-events"].partitions == 6
    assert specs["policies"].partitions == 1
    assert specs["policies"].config == {"cleanup.policy": "compact"}
    with pytest.raises(TopicsError):
        topic_specs(Settings(), partitions=-1)
