"""The registry client: ids fetched once into a bounded cache, waits (never dead letters)
while the registry is unreachable, output schemas registered under `<topic>-value`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.contracts import schemas
from pipeline.contracts.codec import registry_header
from pipeline.kafka.schema_registry import (
    RegistryClient,
    RegistryStartError,
    RegistryUnavailable,
    WriterSchemas,
    register_outputs,
)
from pipeline.settings import Settings
from tests.conftest import free_port
from tests.registry_standin import StandInRegistry

AGENT = orjson.dumps(schemas.get("agent_event").raw).decode()


@pytest.fixture
def registry() -> StandInRegistry:
    server = StandInRegistry().start()
    yield server  # type: ignore[misc]
    server.stop()


def settings_for(url: str, **more: object) -> Settings:
    return Settings.from_env({"TOWER_SCHEMA_REGISTRY_URL": url}, **more)


def writers(url: str, max_ids: int = 1024) -> tuple[WriterSchemas, CollectorRegistry]:
    metrics = CollectorRegistry()
    return WriterSchemas(RegistryClient(settings_for(url)), metrics, max_ids), metrics


def test_a_schema_is_fetched_once(registry: StandInRegistry) -> None:
    schema_id = registry.state.id_for(AGENT, "AVRO")
    cache, _ = writers(registry.url)
    first = cache.lookup("agent_event", schema_id)
    assert first is not None and first.problem is None and first.reader is None
    assert cache.lookup("agent_event", schema_id) is first
    assert registry.state.requests.count(("GET", f"/schemas/ids/{schema_id}")) == 1


def test_an_unknown_id_is_none(registry: StandInRegistry) -> None:
    cache, _ = writers(registry.url)
    assert cache.lookup("agent_event", 404) is None


def test_the_cache_is_bounded_but_holds_a_whole_batch(registry: StandInRegistry) -> None:
    cache, _ = writers(registry.url, max_ids=2)
    ids = [
        registry.state.id_for(AGENT.replace('"AgentEvent"', f'"A{i}"'), "AVRO") for i in range(5)
    ]
    assert cache.wait_for([registry_header(i) for i in ids[:4]])
    assert set(cache._texts) == set(ids[:4])  # the batch decodes from it
    assert cache.wait_for([registry_header(ids[4])])
    assert len(cache._texts) == 2


def test_a_batch_waits_while_the_registry_is_down_and_goes_on_after() -> None:
    port = free_port()
    cache, metrics = writers(f"http://127.0.0.1:{port}")
    values = [registry_header(1) + b"body", b'{"json": 1}', registry_header(1)]
    server = StandInRegistry(port)
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        assert metrics.get_sample_value("tower_schema_registry_waiting_records") == 2
        if len(slept) == 4:  # the registry comes back
            server.start()
            server.state.id_for(AGENT, "AVRO")

    try:
        assert cache.wait_for(values, sleep=sleep)
    finally:
        server.stop()
    assert slept == [0.1, 0.2, 0.4, 0.8]  # backoff doubling
    assert metrics.get_sample_value("tower_schema_registry_waiting_records") == 0
    errors = metrics.get_sample_value("tower_schema_registry_errors_total", {"operation": "schema"})
    assert errors == 4
    assert cache.lookup("agent_event", 1) is not None


def test_waiting_stops_when_asked() -> None:
    cache, _ = writers(f"http://127.0.0.1:{free_port()}")
    assert not cache.wait_for([registry_header(1)], stop=lambda: True, sleep=lambda s: None)


def test_the_next_url_is_tried(registry: StandInRegistry) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    registry.state.id_for(AGENT, "AVRO")
    cache, _ = writers(f"{dead},{registry.url}")
    assert cache.lookup("agent_event", 1) is not None


def test_unreachable_says_which_setting() -> None:
    client = RegistryClient(settings_for(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RegistryUnavailable, match="TOWER_SCHEMA_REGISTRY_URL"):
        client.schema(1)


def test_basic_auth_from_a_file_never_shown(registry: StandInRegistry, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-pw\n")
    registry.require_basic_auth("tower", "s3cret-pw")
    registry.state.id_for(AGENT, "AVRO")
    env = {
        "TOWER_SCHEMA_REGISTRY_URL": registry.url,
        "TOWER_SCHEMA_REGISTRY_USERNAME": "tower",
        "TOWER_SCHEMA_REGISTRY_PASSWORD_FILE": str(secret),
    }
    settings = Settings.from_env(env)
    client = RegistryClient(settings)
    assert client.schema(1) is not None
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(client)
    wrong = (
        RegistryClient(
            Settings.from_env(
                {**env, "TOWER_SCHEMA_REGISTRY_PASSWORD_FILE": str(tmp_path / "other")}
            )
        )
        if (tmp_path / "other").write_text("nope")
        else None
    )
    assert wrong is not None
    with pytest.raises(RegistryUnavailable, match="401") as info:
        wrong.schema(1)
    assert "nope" not in str(info.value)


def test_outputs_are_registered_under_topic_subjects(registry: StandInRegistry) -> None:
    settings = settings_for(registry.url, output_format="registry-avro")
    ids = register_outputs(RegistryClient(settings), settings)
    assert set(ids) == {"approved_action", "audit_record", "dead_letter"}
    assert set(registry.state.subjects) == {
        f"{settings.topics.approved}-value",
        f"{settings.topics.audit}-value",
        f"{settings.topics.deadletter}-value",
    }
    assert register_outputs(RegistryClient(settings), settings) == ids  # idempotent


def test_a_subject_whose_rule_refuses_the_schema_stops_the_start(
    registry: StandInRegistry,
) -> None:
    settings = settings_for(registry.url, output_format="registry-avro")
    subject = f"{settings.topics.audit}-value"
    registry.state.subjects[subject] = [
        registry.state.id_for('{"type":"record","name":"Other","fields":[]}', "AVRO")
    ]
    registry.state.compatibility[subject] = "FULL"
    with pytest.raises(RegistryStartError) as info:
        register_outputs(RegistryClient(settings), settings)
    assert "\n" not in str(info.value)
    assert subject in str(info.value)


def test_an_unreachable_registry_stops_the_start() -> None:
    settings = settings_for(f"http://127.0.0.1:{free_port()}", output_format="registry-avro")
    with pytest.raises(RegistryStartError, match="unreachable") as info:
        register_outputs(RegistryClient(settings), settings)
    assert "\n" not in str(info.value)
