"""What a worker checks before it joins its group: the settings, its web port, the broker
and every topic it reads or writes. Each check reads and never creates.

A broker that auto-creates topics would give a worker started before `tower topics create`
one-partition topics to run on, and a broker that is down or a port that is taken would
show only once the runtime had started half its services. So the worker refuses to start
instead, with one `StartupProblem`: a line that names the cause and what fixes it, and an
exit code of its own (`EXIT_CODES`, also in `tower worker --help`) for scripts and
supervisors.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

from pipeline.kafka import clients
from pipeline.kafka.topics import (
    TopicResult,
    TopicsError,
    TopicsReport,
    broker_answers,
    changelog_topic,
    check_topics,
)
from pipeline.settings import Settings, TopicNames

#: how long the broker has to answer the worker's first metadata request
BROKER_TIMEOUT_S = 5.0


class StartupFailure(IntEnum):
    """The exit code of a worker that refused to start, one per cause (1 is any other
    error, 2 a wrong command line)."""

    SETTINGS = 3
    BOOTSTRAP_UNRESOLVED = 4
    NO_BROKER = 5
    TOPIC_MISSING = 6
    TOPIC_PARTITIONS = 7
    TOPIC_CONFIG = 8
    WEB_PORT = 9


#: exit code -> what it means, for `tower worker --help` and docs/operations.md
EXIT_CODES: dict[StartupFailure, str] = {
    StartupFailure.SETTINGS: "the settings contradict each other or are out of range",
    StartupFailure.BOOTSTRAP_UNRESOLVED: "no host of TOWER_BOOTSTRAP resolves",
    StartupFailure.NO_BROKER: "no Kafka broker answers on TOWER_BOOTSTRAP",
    StartupFailure.TOPIC_MISSING: "a topic is missing (`tower topics create`)",
    StartupFailure.TOPIC_PARTITIONS: "a topic has the wrong partition count",
    StartupFailure.TOPIC_CONFIG: "a topic has the wrong config (e.g. not compacted)",
    StartupFailure.WEB_PORT: "the web port is in use or cannot be listened on",
}


@dataclass(frozen=True)
class StartupProblem:
    """Why the worker does not start: one line naming the cause and its fix."""

    failure: StartupFailure
    message: str


def exit_code_lines() -> list[str]:
    return [f"{int(code)}  {meaning}" for code, meaning in EXIT_CODES.items()]


# --- settings (pure) -------------------------------------------------------------------------

#: numeric settings no worker can run outside of: field -> least value
MINIMUMS: dict[str, float] = {
    "partitions": 1,
    "batch_size": 1,
    "transaction_max_records": 1,
    "max_event_bytes": 1,
    "batch_within_s": 0,
    "policy_wait_s": 0,
}


def settings_problem(settings: Settings) -> StartupProblem | None:
    """Checks across settings that `Settings.from_env` leaves to the worker."""
    for name, least in MINIMUMS.items():
        value = getattr(settings, name)
        if value < least:
            return _settings(f"TOWER_{name.upper()} must be at least {least:g}, not {value}")
    rf = settings.replication_factor
    if rf != -1 and rf < 1:
        return _settings(
            f"TOWER_REPLICATION_FACTOR must be at least 1, or -1 for the broker's default, not {rf}"
        )
    if not 1 <= settings.web_port <= 65535:
        return _settings(f"TOWER_WEB_PORT must be a port from 1 to 65535, not {settings.web_port}")
    return _topic_names_problem(settings)


def _topic_names_problem(settings: Settings) -> StartupProblem | None:
    """Two roles on one topic would feed the worker its own outputs or mix records."""
    seen: dict[str, str] = {}
    for f in fields(TopicNames):
        topic, var = getattr(settings.topics, f.name), f"TOWER_TOPIC_{f.name.upper()}"
        if topic in seen:
            return _settings(
                f"{var} and {seen[topic]} both name topic {topic!r}: give each its own topic"
            )
        seen[topic] = var
    changelog = changelog_topic(settings.app_id)
    if changelog in seen:
        return _settings(
            f"{seen[changelog]} names the state changelog {changelog!r} of TOWER_APP_ID: "
            "give it another topic"
        )
    return None


def _settings(message: str) -> StartupProblem:
    return StartupProblem(StartupFailure.SETTINGS, message)


# --- the web port ----------------------------------------------------------------------------


def web_port_problem(host: str, port: int) -> StartupProblem | None:
    """Bind as the web server will (address reuse on, so a port in TIME_WAIT is free) and
    let go at once."""
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return StartupProblem(
            StartupFailure.WEB_PORT,
            f"the web host {host!r} does not resolve ({exc.strerror}): set TOWER_WEB_HOST",
        )
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    why = "is in use (another worker?)"
                else:
                    why = f"cannot be listened on ({exc.strerror})"
                return StartupProblem(
                    StartupFailure.WEB_PORT,
                    f"the web port {where} {why}: set TOWER_WEB_PORT (--web-port) to a free "
                    "port, or TOWER_WEB_HOST",
                )
    return None


# --- the broker ------------------------------------------------------------------------------

Resolve = Callable[..., Sequence[Any]]


def bootstrap_hosts(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port` pairs of a bootstrap list (`[v6]:port` too; Kafka's port by default)."""
    out = []
    for entry in (e.strip() for e in bootstrap.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
            host, port = entry, "9092"
        out.append((host.strip("[]"), int(port)))
    return out


def bootstrap_problem(
    bootstrap: str, resolve: Resolve = socket.getaddrinfo
) -> StartupProblem | None:
    """None if some host of the list resolves (the client finds the others from it)."""
    hosts = bootstrap_hosts(bootstrap)
    if not hosts:
        return _settings("TOWER_BOOTSTRAP is empty: set it (or --bootstrap) to host:port")
    failures = []
    for host, port in hosts:
        try:
            resolve(host, port, type=socket.SOCK_STREAM)
            return None
        except (socket.gaierror, UnicodeError) as exc:
            failures.append(f"{host}: {getattr(exc, 'strerror', None) or exc}")
    return StartupProblem(
        StartupFailure.BOOTSTRAP_UNRESOLVED,
        f"no host of the bootstrap list {bootstrap!r} resolves ({'; '.join(failures)}): "
        "fix --bootstrap / TOWER_BOOTSTRAP",
    )


def no_broker(settings: Settings, timeout: float) -> StartupProblem:
    fix = "start one with `tower kafka up`, or point --bootstrap / TOWER_BOOTSTRAP at yours"
    if settings.security_protocol != "PLAINTEXT":
        fix += f" (and check TOWER_SECURITY_PROTOCOL={settings.security_protocol}'s credentials)"
    return StartupProblem(
        StartupFailure.NO_BROKER,
        f"no Kafka broker answered on {settings.bootstrap} within {timeout:g} s: {fix}",
    )


# --- the topics ------------------------------------------------------------------------------

#: the worst problem of a topic first: it is the one the exit code names
_BY_STATUS = {
    "missing": StartupFailure.TOPIC_MISSING,
    "wrong-partitions": StartupFailure.TOPIC_PARTITIONS,
    "wrong-config": StartupFailure.TOPIC_CONFIG,
}


def topics_problem(report: TopicsReport) -> StartupProblem | None:
    """The worker runs only on topics as `tower topics create` makes them: it never creates
    one, and a wrong partition count would put customers' keys on the wrong partitions."""
    problems = sorted(report.problems, key=lambda r: list(_BY_STATUS).index(r.status))
    if not problems:
        return None
    first = problems[0]
    more = len(problems) - 1
    also = f" ({more} more topic{'s' if more > 1 else ''} too)" if more else ""
    return StartupProblem(_BY_STATUS[first.status], _topic_line(first) + also)


def _topic_line(r: TopicResult) -> str:
    if r.status == "missing":
        return (
            f"topic {r.name!r} does not exist, and the worker creates none: "
            "run `tower topics create`"
        )
    return (
        f"topic {r.name!r} {r.problem}, so the worker will not run on it: "
        "`tower topics create` says how to fix it"
    )


# --- all of them -----------------------------------------------------------------------------


def startup_problem(settings: Settings, timeout: float = BROKER_TIMEOUT_S) -> StartupProblem | None:
    """The first reason the worker cannot start, local checks before the broker's."""
    problem = (
        settings_problem(settings)
        or web_port_problem(settings.web_host, settings.web_port)
        or bootstrap_problem(settings.bootstrap)
    )
    if problem is not None:
        return problem
    admin = clients.admin(settings)
    if not broker_answers(settings, timeout=timeout, admin=admin):
        return no_broker(settings, timeout)
    try:
        return topics_problem(check_topics(settings, timeout=timeout, admin=admin))
    except TopicsError as exc:  # the broker went away, or refused a topic's config
        return StartupProblem(StartupFailure.NO_BROKER, str(exc))
