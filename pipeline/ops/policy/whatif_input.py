"""The what-if's recorded input, from a JSONL file or `kafka:TOPIC`, and its change table.

`tower policy diff` answers "what would this change do?" before anyone publishes: it
re-decides this input under both policies with the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.whatif import WhatIfReport
from pipeline.kafka.reader import ScanError, scan_topic
from pipeline.kafka.topics import wait_for_broker
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.settings import Settings

KAFKA_PREFIX = "kafka:"


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
