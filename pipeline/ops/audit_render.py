"""Audit records and replay results as text for people: tables, explanations, both traces.

Pure functions from dicts to lines, so the wording is tested without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.core.audit_minimisation import STUB_MARK
from pipeline.core.replay import MISMATCH, Replayed, ReplaySummary

TABLE_COLUMNS = ("time", "decision", "event", "agent", "channel", "outcome", "rule", "reason")


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_since(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 date/time (UTC unless it names an offset)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither epoch milliseconds nor an ISO date/time "
            "(e.g. 2026-01-01 or 2026-01-01T08:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def audit_table(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """An aligned table, one decision per row; the reason column is last and not padded."""
    rows = [
        (
            iso(r.get("decided_at")),
            str(r.get("decision_id")),
            str(r.get("event_id")),
            str(r.get("agent")),
            r.get("channel") or "-",
            str(r.get("outcome")),
            r.get("rule") or "-",
            str(r.get("reason")),
        )
        for r in records
    ]
    widths = [max(len(c) for c in col) for col in zip(TABLE_COLUMNS, *rows, strict=False)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in (TABLE_COLUMNS, *rows)
    ]


def json_line(record: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(record)).decode()


def _input(record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = orjson.loads(record.get("input") or "{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def describe_input(record: Mapping[str, Any]) -> list[str]:
    """Who proposed (or reported) what, to whom, on which channel, when."""
    ev = _input(record)
    if ev.get(STUB_MARK) == "none":
        return [
            f"event {ev.get('event_id', record.get('event_id'))} ({record.get('kind')} by "
            f"{record.get('agent')} about customer {record.get('customer_id')})",
            "input not kept (audit.input=none): the policy keeps no content, attributes or "
            "asserts in the audit",
        ]
    who = f"{ev.get('agent', record.get('agent'))} ({ev.get('department', '?')})"
    customer = ev.get("customer_id", record.get("customer_id"))
    channel = ev.get("channel") or "no channel"
    lines = [f"event {ev.get('event_id', record.get('event_id'))} at {iso(ev.get('occurred_at'))}"]
    p, s = ev.get("proposal"), ev.get("signal")
    if p:
        lines.append(
            f"{who} proposed a {p.get('category')} {p.get('action')} "
            f"(priority {p.get('priority')}) to customer {customer} on {channel}"
        )
        details = [
            f"content {p['content']!r}" if p.get("content") else "",
            f"offer {p['offer_id']}" if p.get("offer_id") else "",
            f"worth {p['offer_value']:g}" if p.get("offer_value") is not None else "",
            f"expires {iso(p['expires_at'])}" if p.get("expires_at") is not None else "",
            f"asserts {_pairs(p['asserts'])}" if p.get("asserts") else "",
        ]
        if any(details):
            lines.append(", ".join(d for d in details if d))
    elif s:
        attrs = s.get("attributes") or {}
        lines.append(
            f"{who} reported {s.get('type')} about customer {customer}"
            + (f": {_pairs(attrs)}" if attrs else "")
        )
    extras = [f"{k} {ev[k]}" for k in ("trigger", "conversation_id") if ev.get(k)]
    if extras:
        lines.append(", ".join(extras))
    return lines


def _pairs(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def trace_lines(trace: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"{i}. {s.get('rule')}: {s.get('verdict')} - {s.get('reason')}"
        for i, s in enumerate(trace, 1)
    ]


def _block(label: str, lines: Sequence[str]) -> list[str]:
    pad = " " * 10
    return [(f"{label:<10}" if i == 0 else pad) + line for i, line in enumerate(lines or ["-"])]


def explain(
    record: Mapping[str, Any], where: str, action: Mapping[str, Any] | None, action_where: str
) -> list[str]:
    """One audit record in words; `action` is the approved action found for it, if any."""
    rule = record.get("rule")
    outcome = f"{record.get('outcome')}" + (f" by {rule}" if rule else "")
    lines = [f"decision  {record.get('decision_id')}  ({where})"]
    lines += _block("input", describe_input(record))
    lines += _block("policy", [str(record.get("policy_version"))])
    lines += _block("trace", trace_lines(record.get("trace") or ()))
    lines += _block("outcome", [f"{outcome}: {record.get('reason')}"])
    if record.get("merged_into"):
        lines += _block("merged", [f"into decision {record['merged_into']}"])
    action_id = record.get("action_id")
    if not action_id:
        lines += _block("action", ["none emitted"])
    elif action is None:
        lines += _block("action", [f"{action_id}, not found on the approved-actions topic"])
    else:
        nb = action.get("not_before")
        lines += _block(
            "action",
            [
                f"{action_id}  ({action_where})",
                f"{action.get('action')} ({action.get('category')}) on {action.get('channel')} "
                f"to {action.get('customer_id')}"
                + (f", not before {iso(nb)}" if nb is not None else ", sent at once"),
                f"agents {', '.join(action.get('agents') or [])}; source events "
                f"{', '.join(action.get('source_event_ids') or [])}",
            ],
        )
    lines += _block("processed", [iso(record.get("processed_at"))])
    return lines


def replay_lines(result: Replayed) -> list[str]:
    """One line per result; a mismatch adds the differing fields and both traces."""
    again = " (re-emitted)" if result.reemitted else ""
    head = (
        f"{result.decision_id}  {result.status:<12} {result.customer_id}  "
        f"{result.recorded.get('outcome')}{again}"
    )
    if result.detail:
        head += f"  - {result.detail}"
    if result.status != MISMATCH or result.recomputed is None:
        return [head]
    lines = [head]
    for name in result.differences:
        if name != "trace":
            lines.append(
                f"    {name}: recorded {result.recorded.get(name)!r}, "
                f"replayed {result.recomputed.get(name)!r}"
            )
    lines.append("    recorded trace:")
    lines += ["      " + t for t in trace_lines(result.recorded.get("trace") or ())]
    lines.append("    replayed trace:")
    lines += ["      " + t for t in trace_lines(result.recomputed.get("trace") or ())]
    return lines


def summary_lines(s: ReplaySummary, seconds: float | None = None) -> list[str]:
    pct = 100.0 * s.matched / s.replayed if s.replayed else 100.0
    lines = [
        f"decisions replayed  {s.replayed}",
        f"matched             {s.matched} ({pct:.2f}%)",
        f"mismatched          {s.mismatched}",
        f"unresolved policies {s.unresolved}"
        + (f" ({', '.join(s.unresolved_versions)})" if s.unresolved_versions else ""),
        f"not replayable      {s.unreplayable}",
    ]
    if s.not_kept:
        lines.append(
            f"not re-checkable    {s.not_kept} decisions, input not kept"
            f" ({'; '.join(s.not_kept_levels)})"
        )
    if s.unverifiable:
        lines.append(
            f"unverifiable        {s.unverifiable} decisions differ, but their input was "
            f"minimised ({'; '.join(s.unverifiable_levels)}): not counted as mismatches"
        )
    if seconds is not None and seconds > 0:
        lines.append(f"replay speed        {s.replayed / seconds:,.0f} decisions/s")
    return lines
