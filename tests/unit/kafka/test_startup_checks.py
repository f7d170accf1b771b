"""The worker's start-up checks that need no broker: settings, bootstrap list, topic report,
web port and the exit-code table."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

import pytest

from pipeline.kafka.startup_checks import (
    EXIT_CODES,
    StartupFailure,
    bootstrap_hosts,
    bootstrap_problem,
    settings_problem,
    topics_problem,
    web_port_problem,
)
from pipeline.kafka.topics import TopicResult, TopicsReport, _check, topic_specs
from pipeline.settings import Settings, TopicNames


def test_exit_codes_are_distinct_documented_and_not_clicks() -> None:
    codes = [int(f) for f in StartupFailure]
    assert len(set(codes)) == len(codes)
    assert set(EXIT_CODES) == set(StartupFailure)
    assert not {0, 1, 2} & set(codes)  # success, any other error, click's usage error


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"partitions": 0}, "TOWER_PARTITIONS must be at least 1, not 0"),
        ({"batch_size": 0}, "TOWER_BATCH_SIZE"),
        ({"transaction_max_records": -5}, "TOWER_TRANSACTION_MAX_RECORDS"),
        ({"max_event_bytes": 0}, "TOWER_MAX_EVENT_BYTES"),
        ({"batch_within_s": -0.1}, "TOWER_BATCH_WITHIN_S"),
        ({"policy_wait_s": -1.0}, "TOWER_POLICY_WAIT_S"),
        ({"replication_factor": 0}, "TOWER_REPLICATION_FACTOR"),
        ({"web_port": 0}, "TOWER_WEB_PORT must be a port from 1 to 65535, not 0"),
        ({"web_port": 70000}, "TOWER_WEB_PORT"),
        (
            {"topics": TopicNames(wakeups="agent-events")},
            "TOWER_TOPIC_WAKEUPS and TOWER_TOPIC_EVENTS both name topic 'agent-events'",
        ),
        (
            {"topics": TopicNames(deadletter="audit")},
            "TOWER_TOPIC_DEADLETTER and TOWER_TOPIC_AUDIT",
        ),
        (
            {"topics": TopicNames(audit="journey-tower-customer-state-changelog")},
            "TOWER_TOPIC_AUDIT names the state changelog",
        ),
    ],
)
def test_settings_problems(change: dict[str, Any], says: str) -> None:
    problem = settings_problem(replace(Settings(), **change))
    assert problem is not None and problem.failure is StartupFailure.SETTINGS
    assert says in problem.message and "\n" not in problem.message


@pytest.mark.parametrize(
    "settings",
    [Settings(), Settings(replication_factor=3, partitions=1, batch_within_s=0.0)],
)
def test_consistent_settings_pass(settings: Settings) -> None:
    assert settings_problem(settings) is None


@pytest.mark.parametrize(
    ("bootstrap", "hosts"),
    [
        ("127.0.0.1:9092", [("127.0.0.1", 9092)]),
        ("a:1, b:2", [("a", 1), ("b", 2)]),
        ("broker", [("broker", 9092)]),
        ("[::1]:9093", [("::1", 9093)]),
        ("::1", [("::1", 9092)]),
        ("a:1,,", [("a", 1)]),
        ("", []),
    ],
)
def test_bootstrap_hosts(bootstrap: str, hosts: list[tuple[str, int]]) -> None:
    assert bootstrap_hosts(bootstrap) == hosts


def resolver(known: set[str]) -> Any:
    def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host not in known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [("addr",)]

    return resolve


@pytest.mark.parametrize(
    ("bootstrap", "known", "failure"),
    [
        ("good:9092", {"good"}, None),
        ("bad:9092,good:9092", {"good"}, None),  # one is enough to find the rest
        ("bad:9092", set(), StartupFailure.BOOTSTRAP_UNRESOLVED),
        ("bad:1,worse:2", set(), StartupFailure.BOOTSTRAP_UNRESOLVED),
        (" , ", set(), StartupFailure.SETTINGS),
    ],
)
def test_bootstrap_problem(bootstrap: str, known: set[str], failure: StartupFailure | None) -> None:
    problem = bootstrap_problem(bootstrap, resolver(known))
    assert (problem and problem.failure) == failure
    if failure is StartupFailure.BOOTSTRAP_UNRESOLVED:
        assert problem is not None and "TOWER_BOOTSTRAP" in problem.message
        assert all(h in problem.message for h, _ in bootstrap_hosts(bootstrap))


def report_of(results: list[TopicResult]) -> TopicsReport:
    return TopicsReport("b:9092", results)


OK = TopicResult("audit", "exists", 8, 8)
MISSING = TopicResult("agent-events", "missing", 8, 0, "does not exist", "run it")
FEW = TopicResult("tower-wakeups", "wrong-partitions", 8, 1, "has 1 partition, expected 8", "x")
LOOSE = TopicResult("policies", "wrong-config", 1, 1, "has cleanup.policy=delete, expected compact")


@pytest.mark.parametrize(
    ("results", "failure", "says"),
    [
        ([OK], None, ()),
        ([OK, MISSING], StartupFailure.TOPIC_MISSING, ("'agent-events' does not exist",)),
        ([FEW], StartupFailure.TOPIC_PARTITIONS, ("'tower-wakeups' has 1 partition, expected 8",)),
        (
            [LOOSE],
            StartupFailure.TOPIC_CONFIG,
            ("'policies' has cleanup.policy=delete, expected compact",),
        ),
        # the worst one names the exit code; the others are counted
        ([LOOSE, FEW, MISSING], StartupFailure.TOPIC_MISSING, ("agent-events", "2 more topics")),
        ([LOOSE, FEW], StartupFailure.TOPIC_PARTITIONS, ("tower-wakeups", "1 more topic too")),
    ],
)
def test_topics_problem(
    results: list[TopicResult], failure: StartupFailure | None, says: tuple[str, ...]
) -> None:
    problem = topics_problem(report_of(results))
    assert (problem and problem.failure) == failure
    if problem is not None:
        assert "tower topics create" in problem.message
        assert all(s in problem.message for s in says)


def test_topic_check_reports_what_is_missing_or_wrong() -> None:
    specs = {s.name: s for s in topic_specs(Settings(partitions=4))}
    assert "journey-tower-customer-state-changelog" in specs  # made by `tower topics create`
    changelog = specs["journey-tower-customer-state-changelog"]
    assert (changelog.partitions, changelog.config) == (4, {"cleanup.policy": "compact"})
    events, policies = specs["agent-events"], specs["policies"]
    assert _check(events, {}, set(), {}).status == "missing"
    assert _check(events, {"agent-events": 2}, set(), {}).problem == "has 2 partitions, expected 4"
    compacted = {"policies": {"cleanup.policy": "compact"}}
    assert _check(policies, {"policies": 1}, set(), compacted).status == "exists"
    loose = _check(policies, {"policies": 1}, set(), {"policies": {"cleanup.policy": "delete"}})
    assert loose.status == "wrong-config" and "cleanup.policy=delete" in loose.detail


def test_web_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problem = web_port_problem("127.0.0.1", port)
    assert problem is not None and problem.failure is StartupFailure.WEB_PORT
    assert f"127.0.0.1:{port} is in use" in problem.message
    assert "TOWER_WEB_PORT" in problem.message


def test_a_free_web_port_passes_and_stays_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert web_port_problem("127.0.0.1", port) is None
    with socket.socket() as again:  # the check let go of it
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
