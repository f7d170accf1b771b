"""Frequency caps: N contacts per rolling window, counted across every agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from yaml.nodes import Node, SequenceNode

from pipeline.contracts.events import CATEGORIES
from pipeline.core.decision import BLOCK, PASS, RuleStep
from pipeline.core.policy_reader import (
    INVALID,
    Invalid,
    Reader,
    Section,
    fields,
    join,
    name_set,
    positive_ms,
)
from pipeline.core.rules import RuleContext, RuleSpec
from pipeline.core.state import Contact

NAME = "frequency_cap"
CAP_SCOPES: frozenset[str] = frozenset({"channel", "category", "department", "all"})


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `limit` approved contacts per rolling `window_ms`, counted across all agents.

    `scope` says what is counted together: contacts on the same `channel`, of the same
    `category` or `department`, or `all` contacts of the customer.
    """

    name: str
    limit: int
    window_ms: int
    scope: str = "channel"
    exempt_categories: frozenset[str] = frozenset({"transactional"})


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


def _scope(r: Reader, n: Node, p: str) -> str | Invalid:
    text = r.text(n, p)
    if isinstance(text, str) and text not in CAP_SCOPES:
        return r.fail(n, p, f"unknown scope {text!r}; valid: {join(CAP_SCOPES)}")
    return text


CAP_FIELDS: Mapping[str, Section] = {
    "name": lambda r, n, p: r.text(n, p),
    "limit": lambda r, n, p: r.integer(n, p, 0, ">= 0"),
    "window_ms": positive_ms,
    "scope": _scope,
    "exempt_categories": name_set(CATEGORIES, "category"),
}
CAP_REQUIRED = frozenset({"name", "limit", "window_ms"})


def read_caps(r: Reader, n: Node, p: str) -> tuple[FrequencyCap, ...] | Invalid:
    if not isinstance(n, SequenceNode):
        return r.fail(n, p, f"must be a list of caps with keys: {join(frozenset(CAP_FIELDS))}")
    caps: list[FrequencyCap] = []
    ok = True
    for i, item in enumerate(n.value):
        before = len(r.issues)
        values = fields(r, item, f"{p}[{i}]", CAP_FIELDS, CAP_REQUIRED)
        if len(r.issues) > before:
            ok = False
            continue
        if any(c.name == values["name"] for c in caps):
            r.fail(item, f"{p}[{i}].name", f"cap name {values['name']!r} used twice")
            ok = False
            continue
        caps.append(FrequencyCap(**values))
    return tuple(caps) if ok else INVALID


RULE = RuleSpec(NAME, check, {"caps": read_caps})
