"""Quiet hours: no disturbing a customer at night, in the customer's own time zone.

Per category the policy either defers (the action is emitted with `not_before` set to the
end of the quiet period, computed in wall-clock time so DST changes are respected) or
suppresses. Silent for categories that are not quiet or are exempt.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pipeline.core.decision import RuleStep
from pipeline.core.policy import QuietHours
from pipeline.core.rules import BLOCK, PASS, RuleContext

NAME = "quiet_hours"
DEFER = "defer"


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
    verdict = DEFER if mode == DEFER else BLOCK
    return RuleStep(NAME, verdict, f"quiet hours {qh.start}-{qh.end} {tz}: {mode} until {until}")
