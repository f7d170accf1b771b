"""`tower worker` refuses to start on a broker, topics, port or settings it cannot run on:
exit code per cause, one line on stderr naming the cause and the fix, and nothing created
on the broker. On both runtimes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from pipeline.kafka import clients
from pipeline.settings import Settings
from tests.conftest import MODULE, REPO, WorkerProcess, free_port

pytestmark = pytest.mark.integration

#: only to keep a hanging worker from blocking CI, not a timing assertion
HANG_S = 90.0
RUNTIMES = ("faust", "transactional")


def broker_topics(settings: Settings) -> set[str]:
    """Every topic on the broker, internal ones included."""
    return set(clients.admin(settings).list_topics(timeout=30).topics)


def make_topic(settings: Settings, name: str, partitions: int, config: dict[str, str]) -> None:
    admin = clients.admin(settings)  # kept: its futures die with it
    futures = admin.create_topics(
        [NewTopic(name, partitions, settings.replication_factor, config=config)]
    )
    for fut in futures.values():
        fut.result()
    while name not in broker_topics(settings):  # metadata follows the creation
        time.sleep(0.1)


@dataclass(frozen=True)
class Case:
    name: str
    #: the exit code (`tower worker --help`)
    code: int
    #: what the line on stderr must say (its cause and its fix)
    says: tuple[str, ...]
    #: settings -> (settings the worker runs with, extra environment)
    arrange: Callable[[Settings], tuple[Settings, dict[str, str]]]


def no_broker(s: Settings) -> tuple[Settings, dict[str, str]]:
    return replace(s, bootstrap=f"127.0.0.1:{free_port()}"), {}


def unresolvable(s: Settings) -> tuple[Settings, dict[str, str]]:
    return replace(s, bootstrap="no-such-broker.invalid:9092"), {}


def missing_topic(s: Settings) -> tuple[Settings, dict[str, str]]:
    return replace(s, topics=replace(s.topics, wakeups=s.topics.wakeups + "-absent")), {}


def wrong_partitions(s: Settings) -> tuple[Settings, dict[str, str]]:
    name = s.topics.wakeups + "-one"
    make_topic(s, name, 1, {})
    return replace(s, topics=replace(s.topics, wakeups=name)), {}


def wrong_config(s: Settings) -> tuple[Settings, dict[str, str]]:
    name = s.topics.policies + "-deleting"
    make_topic(s, name, 1, {"cleanup.policy": "delete"})
    return replace(s, topics=replace(s.topics, policies=name)), {}


def same_topic_twice(s: Settings) -> tuple[Settings, dict[str, str]]:
    return s, {"TOWER_TOPIC_WAKEUPS": s.topics.events}


CASES = [
    Case("no-broker", 5, ("no Kafka broker", "tower kafka up", "TOWER_BOOTSTRAP"), no_broker),
    Case("wrong-bootstrap", 4, ("no-such-broker.invalid", "TOWER_BOOTSTRAP"), unresolvable),
    Case("missing-topic", 6, ("-absent", "does not exist", "tower topics create"), missing_topic),
    Case("wrong-partitions", 7, ("-one", "1 partition", "tower topics create"), wrong_partitions),
    Case("wrong-config", 8, ("-deleting", "cleanup.policy", "tower topics create"), wrong_config),
    Case("same-topic-twice", 3, ("TOWER_TOPIC_WAKEUPS", "TOWER_TOPIC_EVENTS"), same_topic_twice),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run_worker(
    settings: Settings, runtime: str, tmp_path: Path, env: dict[str, str], web_port: int
) -> subprocess.CompletedProcess[str]:
    worker = WorkerProcess(settings, tmp_path, tmp_path / "worker", web_port=web_port)
    worker.extra_env.update(TOWER_RUNTIME=runtime, **env)
    try:
        return subprocess.run(
            [sys.executable, "-m", MODULE, "worker"],
            env=worker.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the worker did not exit; stderr:\n{exc.stderr!r}")


def assert_refused(
    done: subprocess.CompletedProcess[str], code: int, says: tuple[str, ...]
) -> None:
    lines = done.stderr.splitlines()
    shown = f"exit {done.returncode}, stderr:\n{done.stderr}\nstdout:\n{done.stdout}"
    assert done.returncode == code, shown
    assert len(lines) == 1, shown
    for words in says:
        assert words in lines[0], shown


#: `tower worker` runs these checks before it picks its runtime, so each case runs on one
#: runtime; the other runtime runs a broker-side case here and the web port's case below
REFUSALS = [pytest.param(c, "faust", id=f"{c.name}-faust") for c in CASES] + [
    pytest.param(c, "transactional", id=f"{c.name}-transactional")
    for c in CASES
    if c.name == "missing-topic"
]


@pytest.mark.parametrize(("case", "runtime"), REFUSALS)
def test_refused_in_one_line_creating_nothing(
    case: Case, runtime: str, tower_settings: Settings, tmp_path: Path
) -> None:
    settings, env = case.arrange(tower_settings)
    before = broker_topics(tower_settings)
    done = run_worker(settings, runtime, tmp_path, env, free_port())
    assert_refused(done, case.code, case.says)
    assert broker_topics(tower_settings) == before


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_web_port_in_use_is_refused_creating_nothing(
    runtime: str, tower_settings: Settings, tmp_path: Path, busy_port: int
) -> None:
    before = broker_topics(tower_settings)
    done = run_worker(tower_settings, runtime, tmp_path, {}, busy_port)
    assert_refused(done, 9, (f":{busy_port}", "in use", "TOWER_WEB_PORT"))
    assert broker_topics(tower_settings) == before


def test_the_workers_clients_never_have_the_broker_create_a_topic(
    tower_settings: Settings,
) -> None:
    """The test broker auto-creates topics (as Kafka does by default); neither runtime's
    clients ask it to, so a missing topic stays missing."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

    from pipeline.runtime.faust import aiokafka_compat

    missing = tower_settings.topics.events + "-never"
    producer = clients.producer(tower_settings, **{"message.timeout.ms": 3000})
    errors: list[object] = []
    producer.produce(missing, b"value", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None  # undeliverable: the topic was not created
    del producer
    consumer = clients.group_consumer(tower_settings, tower_settings.app_id)
    consumer.subscribe([missing])
    consumer.poll(3)
    consumer.close()

    aiokafka_compat.no_topic_auto_creation()  # as the Faust runtime does at start

    async def faust_clients() -> None:
        aio_producer = AIOKafkaProducer(
            bootstrap_servers=tower_settings.bootstrap, request_timeout_ms=3000
        )
        await aio_producer.start()
        try:
            with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
                await aio_producer.send_and_wait(missing, b"value")
        finally:
            await aio_producer.stop()
        aio_consumer = AIOKafkaConsumer(
            missing, bootstrap_servers=tower_settings.bootstrap, request_timeout_ms=3000
        )
        try:
            with pytest.raises(UnknownTopicOrPartitionError):
                await aio_consumer.start()  # it waits for the topic to exist
        finally:
            await aio_consumer.stop()

    asyncio.run(faust_clients())
    assert missing not in broker_topics(tower_settings)
