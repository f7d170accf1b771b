"""Frequency caps: N contacts per rolling window, counted across every agent."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.decision import RuleStep
from pipeline.core.policy import FrequencyCap
from pipeline.core.rules import BLOCK, PASS, RuleContext
from pipeline.core.state import Contact

NAME = "frequency_cap"

#: Cap scope -> index of the `Contact` field a contact must share with the proposal to
#: count (scope `all` counts every contact). Public: the customer view counts caps exactly
#: as this rule does.
SCOPE_FIELD: Mapping[str, int] = {
    scope: Contact._fields.index(scope) for scope in ("channel", "category", "department")
}


def scope_value(cap: FrequencyCap, channel: str, category: str, department: str) -> str | None:
    """The value a contact must share with the proposal to count against `cap`."""
    return {"channel": channel, "category": category, "department": department}.get(cap.scope)


def used(cap: FrequencyCap, contacts: tuple[Contact, ...], value: str | None, now: int) -> int:
    since = now - cap.window_ms
    idx = SCOPE_FIELD.get(cap.scope)
    return sum(
        1
        for c in contacts
        if since < c.at <= now
        and c.category not in cap.exempt_categories
        and (idx is None or c[idx] == value)
    )


def usage(
    contacts: tuple[Contact, ...], caps: tuple[FrequencyCap, ...], as_of: int
) -> list[tuple[FrequencyCap, str | None, int]]:
    """(cap, scope value, contacts counted) for each cap and each scope value among the
    contacts (one row, value None, for scope `all`), counted as `check` counts them."""
    rows: list[tuple[FrequencyCap, str | None, int]] = []
    for cap in caps:
        idx = SCOPE_FIELD.get(cap.scope)
        values: list[str | None] = [None]
        if idx is not None:
            values = [*sorted({str(c[idx]) for c in contacts})]
        rows.extend((cap, value, used(cap, contacts, value, as_of)) for value in values)
    return rows


def check(ctx: RuleContext) -> RuleStep:
    p = ctx.proposal
    channel = ctx.event.channel or ""
    for cap in ctx.policy.caps:
        if p.category in cap.exempt_categories:
            continue
        value = scope_value(cap, channel, p.category, ctx.event.department)
        count = used(cap, ctx.state.contacts, value, ctx.now)
        if count >= cap.limit:
            scope = cap.scope if value is None else f"{cap.scope} {value}"
            return RuleStep(
                NAME,
                BLOCK,
                f"cap {cap.name}: {count}/{cap.limit} contacts on {scope} "
                f"in the last {cap.window_ms // 1000}s",
            )
    return RuleStep(NAME, PASS, "within every frequency cap")
