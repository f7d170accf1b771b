"""What each console page shows, as plain data (the JSON twins are these dicts): SQL over
the read model, then the core's own functions for what the core already knows how to
compute (the impact report, policy history and diff, the what-if).

No page ever shows epoch milliseconds: times are ISO dates (`when`), in the customer's
time zone on a customer's page, and the rules' reasons get their epoch milliseconds
replaced by dates (`readable`).
"""

from __future__ import annotations

import difflib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from pipeline.console.experience import ExperienceFeed
from pipeline.console.store import Store
from pipeline.contracts.codec import InvalidEvent, decode_event
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    PENDING_PREFIX,
    VERSION_PREFIX,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
)
from pipeline.core import experience_trends as xt
from pipeline.core import lift_stats
from pipeline.core.impact import ImpactLedger
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError
from pipeline.core.whatif import what_if
from pipeline.web.customer_view import timeline_entry

MINUTE = 60_000
RANGES: dict[str, tuple[int, int]] = {  # name -> (span, bucket) in ms
    "hour": (3_600_000, MINUTE),
    "day": (86_400_000, 15 * MINUTE),
    "week": (7 * 86_400_000, 3_600_000),
}
#: outcomes of a proposal a rule stopped (a conflict prevented)
STOPPED = ("suppressed", "merged", "deferred", "escalated")
_EPOCH_MS = re.compile(r"(?<![\d.])1\d{12}(?![\d.])")
LIVE_LIMIT = 100


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(ms: int | None, tz: ZoneInfo | None = None) -> str | None:
    """Epoch milliseconds as a readable date, e.g. 2026-01-01 09:30:00 CET."""
    if ms is None:
        return None
    at = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz or ZoneInfo("UTC"))
    return at.strftime("%Y-%m-%d %H:%M:%S %Z")


def readable(text: str | None, tz: ZoneInfo | None = None) -> str:
    """A rule's reason with its epoch milliseconds as dates."""
    return _EPOCH_MS.sub(lambda m: when(int(m.group()), tz) or m.group(), text or "")


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- overview --------------------------------------------------------------------------


def bucket_starts(since: int, now: int, bucket: int) -> list[int]:
    """Every bucket of the window, from the one holding `since` to the one holding `now`."""
    first = since - since % bucket
    return list(range(first, now + 1, bucket)) if now >= since else []


def zero_filled(points: Mapping[int, float], starts: list[int]) -> list[tuple[int, float]]:
    """(bucket start, y) for every bucket, y 0 where the bucket has no records: a quiet
    minute shows as a dip to zero, not as a line drawn across it."""
    return [(t, points.get(t, 0.0)) for t in starts]


def overview(
    store: Store,
    span: str,
    now: int | None = None,
    feed: ExperienceFeed | None = None,
) -> dict[str, Any]:
    window, bucket = RANGES.get(span, RANGES["hour"])
    now = _now_ms() if now is None else now
    since = now - window
    series = store.query(
        "SELECT (processed_at // ?) * ? AS t, outcome, count(*) FROM audit "
        "WHERE processed_at >= ? AND kind IN ('proposal', 'signal') GROUP BY ALL ORDER BY t, 2",
        (bucket, bucket, since),
    )
    per_minute = bucket / MINUTE
    by_outcome: dict[str, dict[int, float]] = defaultdict(dict)
    totals: Counter[str] = Counter()
    for t, outcome, n in series:
        by_outcome[outcome][int(t)] = n / per_minute
        totals[outcome] += n
    starts = bucket_starts(since, now, bucket)
    prevented = store.query(
        "SELECT rule, count(*) FROM audit WHERE processed_at >= ? AND kind = 'proposal' "
        f"AND outcome IN {STOPPED} AND rule IS NOT NULL GROUP BY rule ORDER BY 2 DESC, 1",
        (since,),
    )
    signals = store.query(
        "SELECT signal_type, count(*), avg(score) FROM audit WHERE processed_at >= ? "
        "AND kind = 'signal' GROUP BY signal_type ORDER BY 2 DESC, 1",
        (since,),
    )
    return {
        "range": span if span in RANGES else "hour",
        "from": when(since),
        "to": when(now),
        "bucket_minutes": bucket // MINUTE,
        "decisions_per_minute": {
            o: [
                {"at": when(t), "t": max(0, t - since), "per_minute": round(v, 3)}
                for t, v in zero_filled(points, starts)
            ]
            for o, points in sorted(by_outcome.items())
        },
        "span_ms": window,
        "totals": dict(totals.most_common()),
        "conflicts_prevented": [{"rule": r, "count": n} for r, n in prevented],
        "signals": [
            {"type": t, "count": n, "mean_score": None if s is None else round(s, 3)}
            for t, n, s in signals
        ],
        "experience": None if feed is None else experience_view(feed, since, now, bucket),
        "records": store.counts(),
    }


def experience_view(feed: ExperienceFeed, since: int, now: int, bucket: int) -> dict[str, Any]:
    """Each experience metric over the window, the window before it, the change, and its
    series per bucket (empty buckets: 0 for counts and sums, no value for ratios)."""
    if not feed.ready:
        return {"computing": True, "metrics": []}
    window = now - since
    first = since - since % bucket
    with feed.lock:
        current = feed.trends.totals(since, now + 1)
        previous = feed.trends.totals(since - window, since)
        rows = feed.trends.series(first, now + 1, bucket)
        records, skipped = feed.trends.records, feed.trends.skipped
    metrics = []
    for m in xt.METRICS:
        now_v = xt.value(m, current) if xt.replayed(current) else None
        before = xt.value(m, previous) if xt.replayed(previous) else None
        change = xt.trend(now_v, before)
        metrics.append(
            {
                "metric": m.name,
                "label": m.label,
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
                "value": _rounded(now_v),
                "previous": _rounded(before),
                "change": _rounded(change),
                "direction": _direction(change, m.higher_is_better),
                "series": [
                    {
                        "at": when(first + i * bucket),
                        "t": max(0, first + i * bucket - since),
                        "value": _rounded(xt.value(m, row)),
                    }
                    for i, row in enumerate(rows)
                ],
            }
        )
    return {
        "computing": False,
        "metrics": metrics,
        "records_replayed": records,
        "records_not_replayable": skipped,
    }


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _direction(change: float | None, higher_is_better: bool | None) -> str:
    """better | worse | same | unknown, as the journey owner reads the change."""
    if change is None:
        return "unknown"
    if abs(change) < 1e-9 or higher_is_better is None:
        return "same" if abs(change) < 1e-9 else ("up" if change > 0 else "down")
    return "better" if (change > 0) == higher_is_better else "worse"


# --- policies --------------------------------------------------------------------------


@dataclass
class PolicyState:
    """The policies topic as the read model holds it, judged the way workers judge it."""

    active: PolicyRecord | None = None
    in_force: Policy = DEFAULT_POLICY
    versions: dict[str, PolicyRecord] = field(default_factory=dict)
    pending: dict[str, PolicyRecord] = field(default_factory=dict)
    #: accepted `active` records, oldest first: the history of what was in force
    history: list[PolicyRecord] = field(default_factory=list)


def policy_state(store: Store, accept: Callable[[PolicyRecord, Policy], Policy]) -> PolicyState:
    """`accept(record, in_force)` is the workers' test of an `active` record (it raises
    what makes them ignore one)."""
    state = PolicyState()
    for key, value in store.query('SELECT "key", value FROM policies ORDER BY "offset"'):
        raw = None if value is None else value.encode()
        if key.startswith(PENDING_PREFIX.decode()):
            v = key[len(PENDING_PREFIX) :]
            state.pending.pop(v, None)
            if raw:
                with suppress(InvalidPolicyRecord):
                    state.pending[v] = decode_policy_record(raw)
            continue
        if not raw:
            continue
        try:
            record = decode_policy_record(raw)
        except InvalidPolicyRecord:
            continue
        if key.startswith(VERSION_PREFIX.decode()):
            state.versions[record.policy_version] = record
        elif key == ACTIVE_KEY.decode():
            try:
                state.in_force = accept(record, state.in_force)
            except (PolicyError, ValueError):
                continue
            state.active = record
            state.history.append(record)
    return state


def _record_view(r: PolicyRecord) -> dict[str, Any]:
    return {
        "policy_version": r.policy_version,
        "version": r.version,
        "published_by": r.published_by,
        "published_at": when(r.published_at),
        "proposed_by": r.proposed_by,
        "proposed_at": when(r.proposed_at),
        "approved_by": r.approved_by,
        "approved_at": when(r.approved_at),
        "signed": bool(r.approval_signature),
    }


def policy_view(state: PolicyState) -> dict[str, Any]:
    ks = state.in_force.kill_switch
    return {
        "in_force": state.in_force.policy_version,
        "active": None if state.active is None else _record_view(state.active),
        "history": [_record_view(r) for r in reversed(state.history)],
        "versions": sorted(state.versions),
        "pending": [_record_view(r) for r in state.pending.values()],
        "kill_switch": {"agents": sorted(ks.agents)},
        "agents": sorted(state.in_force.agents),
    }


def policy_of(
    state: PolicyState, version: str, load: Callable[[PolicyRecord], Policy]
) -> Policy | None:
    if version == state.in_force.policy_version:
        return state.in_force
    record = state.versions.get(version) or state.pending.get(version)
    if record is None:
        return None
    try:
        return load(record)
    except (PolicyError, ValueError):
        return None


def document_of(state: PolicyState, version: str) -> str | None:
    record = state.versions.get(version) or state.pending.get(version)
    if record is None and state.active is not None and state.active.policy_version == version:
        record = state.active
    return None if record is None else record.document


def diff_view(
    state: PolicyState, old: str, new: str, load: Callable[[PolicyRecord], Policy]
) -> dict[str, Any]:
    a, b = policy_of(state, old, load), policy_of(state, new, load)
    missing = [v for v, p in ((old, a), (new, b)) if p is None]
    if missing or a is None or b is None:
        return {"old": old, "new": new, "error": f"no such policy version: {', '.join(missing)}"}
    lines = difflib.unified_diff(
        (document_of(state, old) or "").splitlines(),
        (document_of(state, new) or "").splitlines(),
        old,
        new,
        lineterm="",
    )
    return {"old": old, "new": new, "changes": policy_changes(a, b), "document_diff": list(lines)}


def what_if_view(
    store: Store,
    old: Policy,
    new: Policy,
    hours: float,
    limit: int = 20_000,
    now: int | None = None,
) -> dict[str, Any]:
    """The new policy re-deciding the last `hours` of recorded inputs, against the old one:
    what changes, by rule, agent and channel, with examples."""
    since = (_now_ms() if now is None else now) - int(hours * 3_600_000)
    rows = store.query(
        "SELECT customer_id, input FROM audit WHERE processed_at >= ? "
        "AND kind IN ('proposal', 'signal') AND input IS NOT NULL "
        'ORDER BY partition, "offset" LIMIT ?',
        (since, limit),
    )
    events = []
    for customer, text in rows:
        try:
            events.append(decode_event(customer.encode(), text.encode()))
        except InvalidEvent:
            continue  # minimised audit inputs cannot be re-decided
    report = what_if(events, old, new)
    by_id = {e.event_id: e for e in events}
    examples: list[dict[str, Any]] = []
    for (a, b), _ in report.changed_transitions():
        for event_id in report.examples.get((a, b), []):
            ev = by_id.get(event_id)
            if ev is not None and len(examples) < 20:
                examples.append(
                    {
                        "event_id": event_id,
                        "customer_id": ev.customer_id,
                        "agent": ev.agent,
                        "channel": ev.channel,
                        "old": a,
                        "new": b,
                    }
                )
    data = report.to_dict()
    data["transitions"] = [t for t in data["transitions"] if t["old"] != t["new"]]
    return {
        **data,
        "hours": hours,
        "by_rule": dict(report.changed_by_rule.most_common()),
        "by_agent": dict(report.changed_by_agent.most_common()),
        "by_channel": dict(report.changed_by_channel.most_common()),
        "examples": examples,
    }


def console_actions(store: Store, limit: int = 30) -> list[dict[str, Any]]:
    """The latest actions people took in the console (`console_action` records), newest
    first; told apart from the policy code's and the workers' governance records."""
    rows = store.query(
        'SELECT processed_at, agent, "trigger", reason, policy_version FROM audit '
        "WHERE kind = 'console' ORDER BY processed_at DESC, partition, \"offset\" DESC LIMIT ?",
        (limit,),
    )
    return [
        {"at": when(at), "by": by, "action": action, "what": readable(reason), "in_force": v}
        for at, by, action, reason, v in rows
    ]


# --- report ----------------------------------------------------------------------------

#: the signals the impact ledger counts (`experiments.outcomes_of`, repeat contacts)
REPORT_SIGNALS = (
    "purchase",
    "consent_changed",
    "sentiment",
    "csat",
    "message_received",
    "case_opened",
    "case_resolved",
)


def impact_report(store: Store, policy_lookup: Callable[[str], Policy | None]) -> dict[str, Any]:
    """`tower report`'s rows from the read model: the same ledger, fed only the records it
    counts (exposures, and signals of exposed customers), in topic order."""
    started = time.perf_counter()
    ledger = ImpactLedger(policy_lookup)
    cursor = store.db.cursor()
    cursor.execute(
        "WITH exposed AS (SELECT DISTINCT customer_id FROM audit WHERE kind = 'proposal' "
        "AND experiments IS NOT NULL AND outcome IN ('approved', 'deferred', 'withheld')) "
        "SELECT customer_id, kind, outcome, experiments, input, decided_at, policy_version "
        "FROM audit WHERE (kind = 'proposal' AND experiments IS NOT NULL "
        "AND outcome IN ('approved', 'deferred', 'withheld')) OR (kind = 'signal' AND "
        f"outcome = 'recorded' AND signal_type IN {REPORT_SIGNALS} "
        "AND customer_id IN (SELECT customer_id FROM exposed)) "
        'ORDER BY partition, "offset"'
    )
    while rows := cursor.fetchmany(50_000):
        for customer, kind, outcome, arms, text, at, version in rows:
            ledger.add(
                {
                    "customer_id": customer,
                    "kind": kind,
                    "outcome": outcome,
                    "experiments": orjson.loads(arms) if arms else (),
                    "input": text,
                    "decided_at": at,
                    "policy_version": version,
                }
            )
    report_rows = ledger.rows()
    for row in report_rows:
        row["next_step"] = next_step(row)
    return {
        "rows": report_rows,
        "records_counted": ledger.records,
        "seconds": round(time.perf_counter() - started, 3),
        "computed_at": when(_now_ms()),
    }


def next_step(row: Mapping[str, Any]) -> str:
    """What to do next, in plain words."""
    verdict = row.get("verdict") or ""
    if "can't tell" not in verdict:
        return f"{verdict}: the interval excludes zero"
    needed = (
        lift_stats.customers_needed(
            row.get("treatment"),
            row.get("control"),
            row.get("n_treatment", 0),
            row.get("n_control", 0),
        )
        if row.get("metric") not in ("revenue", "csat")
        else None
    )
    if needed is None:
        return "can't tell yet: collect more exposed customers"
    if needed == 0:
        return "can't tell yet: the effect is too small to tell at this size"
    return f"needs about {needed:,} more customers per arm to tell"


# --- agents ----------------------------------------------------------------------------


def agents_view(
    store: Store, report: Mapping[str, Any], kill_switched: frozenset[str]
) -> dict[str, Any]:
    counts = store.query(
        "SELECT agent, count(*), count(*) FILTER (WHERE outcome = 'approved') FROM audit "
        "WHERE kind = 'proposal' GROUP BY agent ORDER BY agent"
    )
    stops = store.query(
        "SELECT agent, rule, count(*) FROM audit WHERE kind = 'proposal' "
        f"AND outcome IN {(*STOPPED, 'withheld')} "
        "AND rule IS NOT NULL GROUP BY ALL ORDER BY 3 DESC, 1, 2"
    )
    merged = store.query(
        "SELECT m.agent, a.agent, count(*) FROM (SELECT agent, merged_into FROM audit "
        "WHERE outcome = 'merged' AND merged_into IS NOT NULL) m JOIN (SELECT agent, decision_id "
        "FROM audit WHERE kind = 'proposal' GROUP BY ALL) a ON a.decision_id = m.merged_into "
        "GROUP BY ALL ORDER BY 1, 2"
    )
    outranked = store.query(
        "SELECT agent, collided_with, count(*) FROM audit "
        "WHERE collided_with IS NOT NULL GROUP BY ALL ORDER BY 1, 2"
    )
    lifts = {
        r["experiment"].partition(":")[2]: r
        for r in report.get("rows", [])
        if r["experiment"].startswith("holdout:") and r["metric"] == "conversion"
    }
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for agent, rule, n in stops:
        by_agent[agent].append({"rule": rule, "count": n})
    names = sorted({a for a, *_ in counts} | {a for a, _, _ in merged} | {b for _, b, _ in merged})
    matrix = {
        "agents": names,
        "merged_into": [{"agent": a, "into": b, "count": n} for a, b, n in merged],
        "outranked_by": [{"agent": a, "by": b, "count": n} for a, b, n in outranked],
    }
    cards = []
    for agent, proposals, approved in counts:
        lift = lifts.get(agent)
        cards.append(
            {
                "agent": agent,
                "proposals": proposals,
                "approved": approved,
                "share_approved": round(approved / proposals, 4) if proposals else None,
                "stopped_by": by_agent.get(agent, []),
                "holdout": None
                if lift is None
                else {
                    k: lift[k]
                    for k in (
                        "metric",
                        "lift",
                        "ci_low",
                        "ci_high",
                        "verdict",
                        "next_step",
                        "n_treatment",
                        "n_control",
                    )
                },
                "kill_switch": "off (switched off)" if agent in kill_switched else "on",
            }
        )
    return {"agents": cards, "collisions": matrix}


# --- dead letters ----------------------------------------------------------------------


def dead_letters_view(
    store: Store, span: str, now: int | None = None, limit: int = 50
) -> dict[str, Any]:
    window, bucket = RANGES.get(span, RANGES["day"])
    now = _now_ms() if now is None else now
    since = now - window
    series = store.query(
        "SELECT (dead_lettered_at // ?) * ? AS t, reason, count(*) FROM deadletter "
        "WHERE dead_lettered_at >= ? GROUP BY ALL ORDER BY t, 2",
        (bucket, bucket, since),
    )
    totals = store.query(
        "SELECT reason, count(*) FROM deadletter GROUP BY reason ORDER BY 2 DESC, 1"
    )
    latest = store.query(
        "SELECT reason, detail, raw_key, raw_value, source_topic, source_partition, source_offset, "
        "dead_lettered_at FROM deadletter "
        'ORDER BY dead_lettered_at DESC, partition, "offset" DESC LIMIT ?',
        (limit,),
    )
    counts: dict[str, dict[int, float]] = defaultdict(dict)
    for t, reason, n in series:
        counts[reason][int(t)] = n
    starts = bucket_starts(since, now, bucket)
    by_reason = {
        reason: [
            {"at": when(t), "t": max(0, t - since), "count": int(n)}
            for t, n in zero_filled(points, starts)
        ]
        for reason, points in counts.items()
    }
    return {
        "range": span if span in RANGES else "day",
        "span_ms": window,
        "by_reason_over_time": dict(by_reason),
        "totals": [{"reason": r, "count": n} for r, n in totals],
        "latest": [
            {
                "reason": reason,
                "detail": readable(detail),
                "key_hex": None if key is None else bytes(key).hex(),
                "raw_hex": bytes(raw or b"").hex(),
                "raw_bytes": len(raw or b""),
                "source": f"{topic}[{p}]@{o}",
                "at": when(at),
            }
            for reason, detail, key, raw, topic, p, o, at in latest
        ],
    }


# --- customers -------------------------------------------------------------------------


def customer_view(store: Store, customer_id: str, in_force: Policy) -> dict[str, Any]:
    rows = store.query(
        "SELECT decision_id, event_id, customer_id, kind, agent, channel, outcome, rule, reason, "
        "action_id, merged_into, policy_version, decided_at, input, experiments FROM audit "
        'WHERE customer_id = ? ORDER BY decided_at, partition, "offset"',
        (customer_id,),
    )
    if not rows:
        return {
            "customer_id": customer_id,
            "known": False,
            "message": f"no such customer: the audit holds no record of {customer_id!r}",
        }
    names = (
        "decision_id",
        "event_id",
        "customer_id",
        "kind",
        "agent",
        "channel",
        "outcome",
        "rule",
        "reason",
        "action_id",
        "merged_into",
        "policy_version",
        "decided_at",
        "input",
        "experiments",
    )
    records = [dict(zip(names, r, strict=True)) for r in rows]
    tz_name = in_force.quiet_hours.timezone
    arms: dict[str, str] = {}
    for r in records:
        try:
            ev = orjson.loads(r["input"] or "{}")
        except orjson.JSONDecodeError:
            ev = {}
        sig = ev.get("signal") if isinstance(ev, dict) else None
        if isinstance(sig, dict) and sig.get("type") == "profile_updated":
            tz = (sig.get("attributes") or {}).get("timezone")
            if tz and zone(tz).key == tz:
                tz_name = tz
        for arm in orjson.loads(r["experiments"]) if r["experiments"] else ():
            arms.setdefault(arm["experiment"], arm["arm"])
    tz = zone(tz_name)
    timeline = []
    for r in records:
        entry = timeline_entry(r)
        entry["at"] = when(entry["at"], tz)
        entry["reason"] = readable(entry["reason"], tz)
        entry["what"] = readable(entry["what"], tz)
        timeline.append(entry)
    return {
        "customer_id": customer_id,
        "known": True,
        "timezone": tz.key,
        "experiments": [{"experiment": e, "arm": a} for e, a in arms.items()],
        "timeline": timeline,
    }


def _span(ms: int | None) -> str | None:
    """A duration in words: 7 days, 12 hours, 30 minutes."""
    if ms is None:
        return None
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", MINUTE)):
        if (ms >= size and ms % size == 0) or unit == "minute":
            n = ms / size
            shown = f"{n:g}"
            return f"{shown} {unit}{'' if shown == '1' else 's'}"
    return None


def live_state_view(answer: Mapping[str, Any], tz: ZoneInfo | None = None) -> dict[str, Any]:
    """The worker's context of a customer for a page: every time a date in the customer's
    time zone (never epoch milliseconds), every window in words."""
    if not answer.get("available"):
        return {"available": False, "error": str(answer.get("error") or "")}
    c = answer.get("context") or {}
    if tz is None:
        tz = zone(c.get("timezone"))
    qh = c.get("quiet_hours") or {}
    esc = c.get("escalation") or {}
    offer = c.get("offer")
    return {
        "available": True,
        "known": bool(c.get("known")),
        "policy_version": c.get("policy_version"),
        "as_of": when(c.get("as_of"), tz),
        "timezone": c.get("timezone"),
        "consents": [
            {
                "channel": x.get("channel"),
                "purpose": x.get("purpose"),
                "granted": bool(x.get("granted")),
                "at": when(x.get("at"), tz),
            }
            for x in c.get("consents") or ()
        ],
        "caps": [
            {
                "cap": x.get("cap"),
                "scope": x.get("scope"),
                "value": x.get("value"),
                "used": x.get("used"),
                "limit": x.get("limit"),
                "headroom": x.get("headroom"),
                "window": _span(x.get("window_ms")),
            }
            for x in c.get("caps") or ()
        ],
        "holds": [
            {
                "hold_id": x.get("hold_id"),
                "key": x.get("key"),
                "until": when(x.get("deadline"), tz),
                "proposals": x.get("proposals"),
            }
            for x in c.get("holds") or ()
        ],
        "open_cases": [
            {"case_id": x.get("case_id"), "opened": when(x.get("opened_at"), tz)}
            for x in c.get("open_cases") or ()
        ],
        "escalation": {
            "needs_human": bool(esc.get("needs_human")),
            "since": when(esc.get("since"), tz),
            "reason": readable(esc.get("reason"), tz),
        },
        "quiet_hours": {
            "quiet_now": bool(qh.get("quiet_now")),
            "next_allowed_send": when(qh.get("next_allowed_send"), tz),
            "start": qh.get("start"),
            "end": qh.get("end"),
        },
        "offer": None
        if not offer
        else {
            "offer_id": offer.get("offer_id"),
            "agent": offer.get("agent"),
            "since": when(offer.get("since"), tz),
            "until": when(offer.get("until"), tz),
        },
        "experiments": [
            {
                "experiment": x.get("experiment"),
                "arm": x.get("arm"),
                "since": when(x.get("exposed_at"), tz),
            }
            for x in c.get("experiments") or ()
        ],
    }


# --- live ------------------------------------------------------------------------------

FILTERS = ("outcome", "agent", "rule", "channel")


def live_options(store: Store) -> dict[str, list[str]]:
    """The values each filter can take (at most 200 each)."""
    return {
        name: [
            v
            for (v,) in store.query(
                f'SELECT DISTINCT "{name}" FROM audit WHERE "{name}" IS NOT NULL '
                "AND kind IN ('proposal', 'signal') ORDER BY 1 LIMIT 200"
            )
        ]
        for name in FILTERS
    }


def live_view(store: Store, filters: Mapping[str, str], signals: bool) -> dict[str, Any]:
    where = ["kind IN ('proposal', 'signal')"]
    params: list[Any] = []
    for name in FILTERS:
        value = filters.get(name)
        if value:
            where.append(f'"{name}" = ?')
            params.append(value)
    base = " AND ".join(where)
    folded = 0
    if not signals:
        folded = int(
            store.query(f"SELECT count(*) FROM audit WHERE {base} AND kind = 'signal'", params)[0][
                0
            ]
        )
        base += " AND kind <> 'signal'"
    rows = store.query(
        "SELECT processed_at, customer_id, kind, agent, channel, outcome, rule, reason, "
        f'policy_version FROM audit WHERE {base} ORDER BY processed_at DESC, "offset" DESC LIMIT ?',
        [*params, LIVE_LIMIT],
    )
    return {
        "filters": {k: filters.get(k) or "" for k in FILTERS},
        "signals_shown": signals,
        "signals_folded": folded,
        "decisions": [
            {
                "at": when(at),
                "customer_id": c,
                "kind": k,
                "agent": a,
                "channel": ch,
                "outcome": o,
                "rule": rule,
                "reason": readable(reason),
                "policy_version": v,
            }
            for at, c, k, a, ch, o, rule, reason, v in rows
        ],
    }
