"""`tower policy ...`: validate, publish, show and what-if a policy document.

Publishing writes the document to the compacted policies topic (see
`pipeline.contracts.policy_record` for the wire format), where every worker's
`PolicyFollower` picks it up between two batches, and records the change in the audit
topic. `diff` answers "what would this change do?" before anyone publishes: it re-decides
recorded input under both policies with the pure core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import KafkaException, Producer

from pipeline.contracts.codec import InvalidEvent, decode_event, encode_record
from pipeline.contracts.events import AgentEvent, Source
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
    version_key,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_changes import policy_changes, summary
from pipeline.core.policy_document import PolicyError, load_policy, load_policy_file
from pipeline.core.whatif import WhatIfReport, what_if
from pipeline.kafka import clients
from pipeline.kafka.policy_follower import PolicyMismatch, policy_from_record
from pipeline.kafka.reader import (
    ScanError,
    read_range,
    scan_consumer,
    scan_topic,
    watermarks,
)
from pipeline.kafka.topics import TopicsError, list_topics, wait_for_broker
from pipeline.ops.cli_errors import friendly_errors
from pipeline.processing.records import policy_change_record
from pipeline.settings import Settings

KAFKA_PREFIX = "kafka:"


class PolicyCommandError(Exception):
    """An expected failure of a policy command; the message says what to do."""


_friendly_errors = friendly_errors(PolicyCommandError, TopicsError, KafkaException)


# --- reading and writing the policies topic ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    record: PolicyRecord
    policy: Policy


@dataclass(frozen=True, slots=True)
class Published:
    record: PolicyRecord
    old_version: str
    changes: list[str]
    audit: dict[str, Any]


def read_active(settings: Settings, timeout: float = 10.0) -> ActivePolicy | None:
    """The policy workers have in force: the last *valid* `active` record, like they do."""
    topic = settings.topics.policies
    if topic not in list_topics(settings, timeout):
        raise PolicyCommandError(
            f"topic {topic!r} does not exist on {settings.bootstrap}: run `tower topics create`"
        )
    active: ActivePolicy | None = None
    consumer = scan_consumer(settings, "policy-cli", timeout)
    try:
        low, end = watermarks(consumer, topic, 0, timeout)
        for msg in read_range(consumer, topic, 0, low, end, timeout):
            if msg.key() == ACTIVE_KEY:
                try:
                    record = decode_policy_record(msg.value())
                    active = ActivePolicy(record, policy_from_record(record))
                except (InvalidPolicyRecord, PolicyError, PolicyMismatch):
                    pass  # workers ignore it too
    except ScanError as exc:
        raise PolicyCommandError(f"could not read {topic!r} to its end: {exc}") from None
    finally:
        consumer.close()
    return active


def publish_policy(
    settings: Settings,
    text: str,
    source: str,
    published_by: str,
    now_ms: int | None = None,
    timeout: float = 30.0,
) -> Published:
    """Validate `text`, make it the active policy, and audit the change (old -> new)."""
    policy = load_policy(text, source)  # raises PolicyError before anything is written
    wait_for_broker(settings, timeout=min(timeout, 10.0))
    current = read_active(settings)
    old = current.policy if current else DEFAULT_POLICY
    published_at = int(time.time() * 1000) if now_ms is None else now_ms
    record = PolicyRecord(
        version=policy.version,
        policy_version=policy.policy_version,
        content_hash=policy.content_hash,
        document=text,
        published_at=published_at,
        published_by=published_by,
    )
    value = encode_policy_record(record)
    producer = clients.producer(settings)
    offsets: dict[bytes, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            offsets[msg.key()] = msg.offset()

    topic = settings.topics.policies
    # history first: once `active` is visible, its version is always findable too
    producer.produce(
        topic, key=version_key(policy.policy_version), value=value, on_delivery=delivered
    )
    producer.produce(topic, key=ACTIVE_KEY, value=value, on_delivery=delivered)
    _flush(producer, errors, timeout, f"policy {policy.policy_version} to {topic!r}")

    changes = policy_changes(old, policy)
    audit = policy_change_record(
        summary(old, policy),
        changes,
        old.policy_version,
        policy.policy_version,
        published_by,
        published_at,
        Source(topic, 0, offsets[ACTIVE_KEY], published_at),
        value.decode(),
    )
    producer.produce(
        settings.topics.audit,
        key=b"-",
        value=encode_record("audit_record", audit, settings.output_format),
        on_delivery=delivered,
    )
    _flush(
        producer, errors, timeout, f"the policy_changed audit record to {settings.topics.audit!r}"
    )
    return Published(record, old.policy_version, changes, audit)


def _flush(producer: Producer, errors: list[str], timeout: float, what: str) -> None:
    left = producer.flush(timeout)
    if errors or left:
        problem = errors[0] if errors else f"{left} record(s) unsent after {timeout:.0f}s"
        raise PolicyCommandError(f"could not publish {what}: {problem}")


# --- recorded input for the what-if -------------------------------------------------------


@dataclass(slots=True)
class LoadedEvents:
    events: list[AgentEvent]
    skipped: int = 0
    first_problems: list[str] | None = None

    def skip(self, where: str, problem: str) -> None:
        self.skipped += 1
        problems = self.first_problems = self.first_problems or []
        if len(problems) < 3:
            problems.append(f"{where}: {problem}")


def load_events(source: str, settings: Settings, limit: int | None = None) -> LoadedEvents:
    """Events from a JSONL file or `kafka:TOPIC`; records the worker would dead-letter skip."""
    if source.startswith(KAFKA_PREFIX):
        return _events_from_kafka(source[len(KAFKA_PREFIX) :], settings, limit)
    return _events_from_jsonl(Path(source), limit)


def _events_from_jsonl(path: Path, limit: int | None) -> LoadedEvents:
    if not path.is_file():
        raise PolicyCommandError(f"{path}: no such file (use a JSONL file or kafka:TOPIC)")
    out = LoadedEvents([])
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(out.events) >= limit:
                break
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                key = data.get("customer_id") if isinstance(data, dict) else None
                event = decode_event(key.encode() if isinstance(key, str) else None, line)
            except (orjson.JSONDecodeError, InvalidEvent) as exc:
                out.skip(f"{path}:{n}", str(exc))
                continue
            out.events.append(event)
    return out


def _events_from_kafka(topic: str, settings: Settings, limit: int | None) -> LoadedEvents:
    """Every partition from its beginning to its end offset as of now (a fixed snapshot)."""
    wait_for_broker(settings, timeout=10.0)
    out = LoadedEvents([])
    try:
        for rec in scan_topic(settings, topic):
            if limit is not None and len(out.events) >= limit:
                break
            try:
                out.events.append(decode_event(rec.key, rec.value))
            except InvalidEvent as exc:
                out.skip(f"{topic}[{rec.partition}]@{rec.offset}", str(exc))
    except ScanError as exc:
        raise PolicyCommandError(str(exc)) from None
    return out


def format_report(report: WhatIfReport) -> str:
    """The change table: outcomes under both policies, then each changed transition."""
    share = report.changed / report.events if report.events else 0.0
    lines = [
        f"what-if over {report.events} events",
        f"  old {report.old_version}",
        f"  new {report.new_version}",
        f"  changed decisions: {report.changed} ({share:.1%})",
        "",
        f"{'outcome':<14}{'old':>9}{'new':>9}{'delta':>9}",
    ]
    for outcome in sorted(set(report.old_outcomes) | set(report.new_outcomes)):
        before, after = report.old_outcomes[outcome], report.new_outcomes[outcome]
        lines.append(f"{outcome:<14}{before:>9}{after:>9}{after - before:>+9}")
    lines.append(f"{'total':<14}{report.events:>9}{report.events:>9}{0:>+9}")
    changed = report.changed_transitions()
    lines.append("")
    if not changed:
        lines.append("no decision changes")
        return "\n".join(lines)
    width = max(len(f"{a} -> {b}") for (a, b), _ in changed)
    lines.append(f"{'transition (old -> new)':<{width}}{'count':>9}  examples")
    for (a, b), n in changed:
        examples = ", ".join(report.examples.get((a, b), []))
        lines.append(f"{f'{a} -> {b}':<{width}}{n:>9}  {examples}")
    return "\n".join(lines)


# --- the commands ------------------------------------------------------------------------

_bootstrap_option = click.option(
    "--bootstrap", help="Kafka bootstrap servers [default: TOWER_BOOTSTRAP or 127.0.0.1:9092]."
)
_policy_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group("policy")
def policy_group() -> None:
    """Policy as code: validate, publish (hot reload on every worker), show, what-if."""


@policy_group.command("validate")
@_policy_file
@_friendly_errors
def policy_validate(file: Path) -> None:
    """Check a policy YAML; print every problem as file:line: path: message (exit 1)."""
    policy = load_policy_file(file)
    click.echo(f"ok: version {policy.version}, policy_version {policy.policy_version}")


@policy_group.command("publish")
@_policy_file
@_bootstrap_option
@click.option("--by", "by", default=None, help="Who publishes [default: $USER].")
@_friendly_errors
def policy_publish(file: Path, bootstrap: str | None, by: str | None) -> None:
    """Validate FILE and make it the active policy of every worker, without a restart."""
    import getpass

    settings = Settings.from_env(bootstrap=bootstrap)
    text = file.read_text(encoding="utf-8")
    published = publish_policy(settings, text, str(file), by or getpass.getuser())
    click.echo(f"published {published.record.policy_version} (was {published.old_version})")
    for line in published.changes or ["no setting changed"]:
        click.echo(f"  {line}")


@policy_group.command("show")
@_bootstrap_option
@_friendly_errors
def policy_show(bootstrap: str | None) -> None:
    """Show the active published policy (what the workers decide with)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    wait_for_broker(settings, timeout=10.0)
    active = read_active(settings)
    if active is None:
        click.echo(
            f"no policy published on {settings.topics.policies!r}: workers use "
            f"TOWER_POLICY_FILE or the built-in default ({DEFAULT_POLICY.policy_version})"
        )
        return
    r = active.record
    when = datetime.fromtimestamp(r.published_at / 1000, UTC).isoformat(timespec="seconds")
    click.echo(f"policy_version  {r.policy_version}")
    click.echo(f"published       {when} by {r.published_by}")
    if active.policy.notes:
        click.echo(f"notes           {active.policy.notes}")


@policy_group.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--events",
    "source",
    required=True,
    help="Recorded input: a JSONL file of agent events, or kafka:TOPIC (read to its end).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Decide at most N events.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_bootstrap_option
@_friendly_errors
def policy_diff(
    old: Path, new: Path, source: str, limit: int | None, as_json: bool, bootstrap: str | None
) -> None:
    """What would change: re-decide recorded events under OLD and NEW, count the differences."""
    old_policy, new_policy = load_policy_file(old), load_policy_file(new)
    settings = Settings.from_env(bootstrap=bootstrap)
    loaded = load_events(source, settings, limit)
    report = what_if(loaded.events, old_policy, new_policy)
    if as_json:
        data = report.to_dict()
        data["skipped"] = loaded.skipped
        data["settings_changed"] = policy_changes(old_policy, new_policy)
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    for line in policy_changes(old_policy, new_policy) or ["no setting changed"]:
        click.echo(f"setting  {line}")
    click.echo(format_report(report))
    if loaded.skipped:
        click.echo(f"\nskipped {loaded.skipped} invalid record(s), e.g.:", err=True)
        for problem in loaded.first_problems or []:
            click.echo(f"  {problem}", err=True)
