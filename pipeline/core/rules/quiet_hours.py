"""Quiet hours: no disturbing a customer at night, in the customer's own time zone.

Per category the policy either defers (the action is emitted with `not_before` set to the
end of the quiet period, computed in wall-clock time so DST changes are respected) or
suppresses. Silent for categories that are not quiet or are exempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.nodes import Node

from pipeline.contracts.events import CATEGORIES
from pipeline.core.decision import BLOCK, DEFER, PASS, RuleStep, Verdict
from pipeline.core.policy_reader import INVALID, Invalid, Reader, boolean, fields, join, section
from pipeline.core.rules import RuleContext, RuleSpec

NAME = "quiet_hours"
QUIET_MODES: frozenset[str] = frozenset({"defer", "suppress"})
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local-time night for the customer: `start` to `end` ("HH:MM", may wrap midnight).

    `categories` maps a category to `defer` or `suppress`; categories not listed are not
    quiet. Empty means the rule is off.
    """

    start: str = "21:00"
    end: str = "08:00"
    timezone: str = "UTC"
    categories: Mapping[str, str] = field(default_factory=dict)
    exempt_transactional: bool = True


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=64)
def parse_hhmm(text: str) -> time:
    hh, mm = text.split(":")
    return time(int(hh), int(mm))


def quiet_until(qh: QuietHours, tz_name: str, now: int) -> int | None:
    """Epoch ms when the quiet period containing `now` ends, or None if `now` is not quiet."""
    tz = _zone(tz_name)
    local = datetime.fromtimestamp(now / 1000, tz)
    start, end = parse_hhmm(qh.start), parse_hhmm(qh.end)
    t = local.time().replace(tzinfo=None)
    day: date = local.date()
    if start < end:
        if not start <= t < end:
            return None
    elif start > end:
        if end <= t < start:
            return None
        if t >= start:
            day = day + timedelta(days=1)
    else:
        return None
    wake = datetime.combine(day, end, tzinfo=tz)
    # A wall time inside a spring-forward gap resolves to just after the gap.
    return int(wake.astimezone(UTC).timestamp() * 1000)


def _mode(ctx: RuleContext) -> str | None:
    qh = ctx.policy.quiet_hours
    category = ctx.proposal.category
    if category == "transactional" and qh.exempt_transactional:
        return None
    return qh.categories.get(category)


def not_before(ctx: RuleContext) -> int | None:
    """When a proposal this rule deferred may go out."""
    if _mode(ctx) != DEFER:
        return None
    qh = ctx.policy.quiet_hours
    return quiet_until(qh, ctx.state.timezone or qh.timezone, ctx.now)


def check(ctx: RuleContext) -> RuleStep | None:
    mode = _mode(ctx)
    if mode is None:
        return None
    qh = ctx.policy.quiet_hours
    tz = ctx.state.timezone or qh.timezone
    until = quiet_until(qh, tz, ctx.now)
    if until is None:
        return RuleStep(NAME, PASS, f"outside quiet hours {qh.start}-{qh.end} {tz}")
    verdict: Verdict = DEFER if mode == DEFER else BLOCK
    return RuleStep(NAME, verdict, f"quiet hours {qh.start}-{qh.end} {tz}: {mode} until {until}")


def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA zone this host knows (bad names are ignored, not fatal)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _hhmm(r: Reader, n: Node, p: str) -> str | Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not HHMM.match(text):
        return r.fail(n, p, f"{text!r} is not a 24h time HH:MM, e.g. 21:30")
    return text


def _timezone(r: Reader, n: Node, p: str) -> str | Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and not is_timezone(text):
        return r.fail(n, p, f"unknown time zone {text!r}; use an IANA name like Europe/Berlin")
    return text


def _quiet_modes(r: Reader, n: Node, p: str) -> dict[str, str] | Invalid:
    def mode(r: Reader, n: Node, p: str) -> str | Invalid:
        text = r.text(n, p)
        if isinstance(text, str) and text not in QUIET_MODES:
            return r.fail(n, p, f"unknown mode {text!r}; valid: {join(QUIET_MODES)}")
        return text

    before = len(r.issues)
    values = fields(r, n, p, dict.fromkeys(CATEGORIES, mode), frozenset())
    return INVALID if len(r.issues) > before else values


def _quiet_span(r: Reader, n: Node, p: str, qh: QuietHours) -> Invalid | None:
    if qh.start == qh.end:
        return r.fail(n, p, f"start and end are both {qh.start}; quiet hours need a span")
    return None


RULE = RuleSpec(
    NAME,
    check,
    {
        "quiet_hours": section(
            QuietHours,
            {
                "start": _hhmm,
                "end": _hhmm,
                "timezone": _timezone,
                "categories": _quiet_modes,
                "exempt_transactional": boolean,
            },
            _quiet_span,
        )
    },
)
