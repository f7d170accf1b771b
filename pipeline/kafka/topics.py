"""The tower's topics (its six and the state changelog), created idempotently against any
broker and checked, without creating anything, before a worker starts.

Partition counts are part of the contract: keys are hashed onto partitions, so a topic silently
used with the wrong count would scatter a customer's events over different tower instances.
That is why a mismatch is reported as a problem instead of being accepted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pipeline.kafka import clients
from pipeline.settings import Settings

Status = Literal["created", "exists", "missing", "wrong-partitions", "wrong-config"]

#: the state table's name; its changelog topic serves both runtimes
STATE_TABLE = "customer-state"


class TopicsError(Exception):
    """A topic operation failed; the message says what to do about it."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    #: its partition count is --partitions / TOWER_PARTITIONS (the policies' is always 1)
    follows_partitions: bool = True


@dataclass(frozen=True)
class TopicResult:
    name: str
    status: Status
    expected_partitions: int
    actual_partitions: int
    #: what is wrong with the topic, and what fixes it ("" when nothing is wrong)
    problem: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("created", "exists")

    @property
    def detail(self) -> str:
        return f"{self.problem}: {self.fix}" if self.problem else ""


@dataclass(frozen=True)
class TopicsReport:
    bootstrap: str
    results: list[TopicResult]

    @property
    def problems(self) -> list[TopicResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """Human-readable, one line per topic, for the CLI."""
        out = []
        for r in self.results:
            if r.detail:
                out.append(f"{r.status:<16} {r.name}: {r.detail}")
            else:
                n = r.actual_partitions
                out.append(f"{r.status:<16} {r.name} ({n} partition{'' if n == 1 else 's'})")
        return out

    def raise_for_problems(self) -> None:
        if self.problems:
            raise TopicsError("; ".join(f"{p.name}: {p.detail}" for p in self.problems))


def changelog_topic(app_id: str) -> str:
    """The state changelog's name, as Faust names a table's changelog."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def topic_specs(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """Wakeups share the events' partition count: a wakeup must land where its key lives;
    so does the changelog: a state lives on its customer's partition."""
    n = partitions or settings.partitions
    if n < 1:
        raise TopicsError(f"--partitions must be at least 1, not {n}")
    t = settings.topics
    return [
        TopicSpec(t.events, n),
        TopicSpec(t.wakeups, n),
        TopicSpec(t.approved, n),
        TopicSpec(t.audit, n),
        TopicSpec(t.deadletter, n),
        # Compacted: the latest policy version per key is the state; one partition keeps order.
        TopicSpec(t.policies, 1, {"cleanup.policy": "compact"}, follows_partitions=False),
        # Compacted: the latest state per customer is what a restore needs.
        TopicSpec(changelog_topic(settings.app_id), n, {"cleanup.policy": "compact"}),
    ]


def replication_factor(settings: Settings, timeout: float = 10.0) -> int:
    """`TOWER_REPLICATION_FACTOR`, or where it is -1 the broker's `default.replication.factor`
    (for clients that cannot ask the broker to choose, as Faust's cannot)."""
    if settings.replication_factor > 0:
        return settings.replication_factor
    admin = clients.admin(settings)
    try:
        broker = min(admin.list_topics(timeout=timeout).brokers)
        resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
        configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    except (KafkaException, ValueError) as exc:
        raise TopicsError(
            f"could not read default.replication.factor from the broker on {settings.bootstrap}:"
            f" {exc}; set TOWER_REPLICATION_FACTOR"
        ) from exc
    return int(configs["default.replication.factor"].value)


def broker_answers(
    settings: Settings, timeout: float = 2.0, admin: AdminClient | None = None
) -> bool:
    """True if a Kafka broker of `settings` answers a metadata request within `timeout`."""
    client = admin or clients.admin(settings)
    try:
        md = client.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(md.brokers)


def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Block until the broker answers metadata; raise TopicsError after `timeout` seconds."""
    bootstrap = settings.bootstrap
    admin = clients.admin(settings)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if broker_answers(settings, timeout=max(0.2, min(1.0, remaining)), admin=admin):
            return
        if time.monotonic() >= deadline:
            raise TopicsError(
                f"no Kafka broker answered on {bootstrap} within {timeout:.0f}s: "
                "start one with `tower kafka up` or point --bootstrap / TOWER_BOOTSTRAP at yours"
            )
        time.sleep(0.2)


def create_topics(
    settings: Settings, partitions: int | None = None, timeout: float = 30.0
) -> TopicsReport:
    """Create what is missing, check what exists; mismatches go in the report, not raised."""
    specs = topic_specs(settings, partitions)
    admin = clients.admin(settings)
    existing = _partition_counts(admin, settings.bootstrap, timeout)

    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, settings.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                created.add(name)
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by someone else; checked below
                raise TopicsError(f"could not create topic {name!r}: {err}") from exc
        existing = _await_partitions(admin, settings.bootstrap, created, timeout)

    configs = _configs(admin, [s for s in specs if s.config and s.name in existing], timeout)
    results = [_check(spec, existing, created, configs) for spec in specs]
    return TopicsReport(settings.bootstrap, results)


def check_topics(
    settings: Settings, timeout: float = 10.0, admin: AdminClient | None = None
) -> TopicsReport:
    """What `create_topics` would find, creating nothing: missing topics are reported."""
    specs = topic_specs(settings)
    client = admin or clients.admin(settings)
    existing = _partition_counts(client, settings.bootstrap, timeout)
    configs = _configs(client, [s for s in specs if s.config and s.name in existing], timeout)
    return TopicsReport(settings.bootstrap, [_check(s, existing, set(), configs) for s in specs])


def delete_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Remove the tower's topics (dev reset, tests); returns the names that were deleted."""
    admin = clients.admin(settings)
    existing = _partition_counts(admin, settings.bootstrap, timeout)
    names = [s.name for s in topic_specs(settings) if s.name in existing]
    if not names:
        return []
    for name, fut in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            fut.result()
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise TopicsError(f"could not delete topic {name!r}: {err}") from exc
    # Deletion is asynchronous on the broker; wait so an immediate re-create does not collide.
    deadline = time.monotonic() + timeout
    while set(names) & set(_partition_counts(admin, settings.bootstrap, timeout)):
        if time.monotonic() > deadline:
            raise TopicsError(f"topics {names} still listed {timeout:.0f}s after deletion")
        time.sleep(0.2)
    return names


def list_topics(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """Non-internal topics and their partition counts."""
    admin = clients.admin(settings)
    return {
        k: v
        for k, v in sorted(_partition_counts(admin, settings.bootstrap, timeout).items())
        if not k.startswith("__")
    }


def _partition_counts(admin: AdminClient, bootstrap: str, timeout: float) -> dict[str, int]:
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicsError(
            f"no Kafka broker answered on {bootstrap}: start one with `tower kafka up` "
            "or point --bootstrap / TOWER_BOOTSTRAP at yours"
        ) from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def _await_partitions(
    admin: AdminClient, bootstrap: str, created: set[str], timeout: float
) -> dict[str, int]:
    """Metadata lags creation: a new topic first shows up with no partitions."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _partition_counts(admin, bootstrap, timeout)
        if all(counts.get(name) for name in created) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _configs(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float
) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    if not resources:
        return {}
    out: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + timeout
    while resources:
        unknown = []
        for res, fut in admin.describe_configs(resources, request_timeout=timeout).items():
            try:
                out[res.name] = {k: str(v.value) for k, v in fut.result().items()}
            except KafkaException as exc:
                err = exc.args[0]
                # on a cluster, a topic just created reaches each broker in turn
                fresh = (
                    isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                )
                if not fresh or time.monotonic() > deadline:
                    raise TopicsError(
                        f"could not read the config of topic {res.name!r}: {exc}"
                    ) from exc
                unknown.append(res)
        resources = unknown
        if resources:
            time.sleep(0.2)
    return out


def _check(
    spec: TopicSpec,
    existing: dict[str, int],
    created: set[str],
    configs: dict[str, dict[str, str]],
) -> TopicResult:
    if spec.name not in existing:
        return TopicResult(
            spec.name, "missing", spec.partitions, 0, "does not exist", "run `tower topics create`"
        )
    actual = existing[spec.name]
    if actual != spec.partitions:
        fix = (
            "delete it (`tower topics delete`) so it is recreated"
            if not spec.follows_partitions
            else f"delete it (`tower topics delete`), or use --partitions {actual}"
        )
        return TopicResult(
            spec.name,
            "wrong-partitions",
            spec.partitions,
            actual,
            f"has {actual} partition{'' if actual == 1 else 's'}, expected {spec.partitions}",
            fix,
        )
    have = configs.get(spec.name, {})
    for key, want in spec.config.items():
        if have.get(key) != want:
            return TopicResult(
                spec.name,
                "wrong-config",
                spec.partitions,
                actual,
                f"has {key}={have.get(key)}, expected {want}",
                "delete the topic so it is recreated, "
                f"or `kafka-configs --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config {key}={want}`",
            )
    return TopicResult(
        spec.name, "created" if spec.name in created else "exists", spec.partitions, actual
    )
