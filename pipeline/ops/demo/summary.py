"""The demo's summary: pure functions of the audit records the demo read back, so what it
says is what the tower recorded, and it can be tested without a broker."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.client import Preflight
from pipeline.core.decision import EMITTING
from pipeline.core.replay import NOT_DECISIONS

#: Summary lines wrap at this width (as `tower --help` does), so they fit a terminal.
WIDTH = 100

#: Why a proposal did not go out, by the audit's outcome/rule: (short label, what it counts).
PREVENTED: dict[str, tuple[str, str]] = {
    "duplicate": ("duplicates", "merged: one action per customer trigger"),
    "replay": ("replays", "the same record sent again (an event id already decided)"),
    "kill_switch": ("switched off", "an operator stopped the agent, action or channel"),
    "eligibility": ("expired", "past the proposal's expires_at when it arrived"),
    "escalation": ("AI during handoff", "AI answers while the customer waits for a human"),
    "consent": ("without consent", "opted out of the channel, or no opt-in for the category"),
    "service_first": ("during a case", "selling while a case is open or after a complaint"),
    "loop_prevention": ("asking the known", "asked for what a signal already told us"),
    "consistency_ledger": ("contradictions", "would contradict what the customer was told"),
    "offer_arbitration": ("competing offers", "the customer already holds an offer"),
    "quiet_hours": ("in quiet hours", "dropped in the customer's local night"),
    "frequency_cap": ("over a cap", "more contacts than a frequency cap allows"),
    "banned_phrases": ("banned phrases", "content with a banned phrase"),
    "max_length": ("too long", "content over the channel's length limit"),
    "control_group": ("control group", "withheld to measure impact: the global control group"),
    "holdout": ("holdouts", "withheld to measure impact: the customer is in an agent's holdout"),
}
#: Content transforms of actions that went out, by trace rule: (short label, what it counts).
TRANSFORMED: dict[str, tuple[str, str]] = {
    "disclosure": ("AI disclosure", "the AI disclosure text put in front"),
    "pii_redaction": ("PII redacted", "e-mail, phone, card or IBAN masked"),
    "max_length": ("shortened", "cut to the channel's length limit"),
    "banned_phrases": ("phrases removed", "a banned phrase replaced by [removed]"),
    "known_facts": ("annotated", "known facts appended instead of asked for"),
}


@dataclass(frozen=True)
class DemoTally:
    """What happened to the records the agents produced, one final decision per input.

    `prevented` counts proposals that did not go out, each once, under the rule that stopped
    it ("duplicate" for merges, "replay" for re-sent proposals); `transformed` counts actions
    that went out with changed content (one action may be in several rows).
    """

    records_in: int
    proposals: int = 0
    replayed_proposals: int = 0
    signals: int = 0
    replayed_signals: int = 0
    emitted: Counter[str] = field(default_factory=Counter)
    prevented: Counter[str] = field(default_factory=Counter)
    hold_merges: int = 0
    transformed: Counter[str] = field(default_factory=Counter)
    still_held: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    actions_published: int | None = None

    @property
    def actions(self) -> int:
        return sum(self.emitted.values())

    @property
    def accounted(self) -> int:
        """Inputs with a decision or a dead letter (a held proposal counts once)."""
        return self.proposals + self.signals + sum(self.dead_letters.values())


def tally(
    audits: Iterable[Mapping[str, Any]],
    dead_letters: Iterable[Mapping[str, Any]],
    records_in: int,
    action_ids: Iterable[str] | None = None,
) -> DemoTally:
    """Count final decisions from decoded audit records (and dead letters).

    A held proposal has two audit records, `held` then its final one (same decision id), so
    the final one counts; a worker's identical re-emit after a crash counts once. A replay
    shares its original's decision id, so replays are told apart by their input's position.
    """
    finals: dict[str, Mapping[str, Any]] = {}
    held: set[str] = set()
    replays: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for a in audits:
        if a.get("kind") in NOT_DECISIONS:
            continue  # a policy change or a console action, not an input of the run
        outcome = a["outcome"]
        if outcome == "held":
            held.add(a["decision_id"])
        elif outcome == "duplicate":
            where = (a["source_topic"], a["source_partition"], a["source_offset"])
            replays[(a["decision_id"], *where)] = a
        else:
            finals[a["decision_id"]] = a
    counts: Counter[str] = Counter()
    emitted: Counter[str] = Counter()
    prevented: Counter[str] = Counter()
    transformed: Counter[str] = Counter()
    for a in replays.values():
        if a["kind"] == "proposal":
            counts["replayed_proposals"] += 1
            prevented["replay"] += 1
        else:
            counts["replayed_signals"] += 1
    for a in finals.values():
        if a["kind"] != "proposal":
            counts["signals"] += 1
            continue
        counts["proposals"] += 1
        outcome = a["outcome"]
        if outcome in EMITTING:
            emitted[outcome] += 1
            for step in a.get("trace") or ():
                if step["verdict"] == "transform":
                    transformed[step["rule"]] += 1
        elif outcome == "merged":
            prevented["duplicate"] += 1
            counts["hold_merges"] += a["rule"] == "hold_window"
        else:
            prevented[a["rule"] or outcome] += 1
    still_held = len(held - finals.keys())
    return DemoTally(
        records_in=records_in,
        proposals=counts["proposals"] + counts["replayed_proposals"] + still_held,
        replayed_proposals=counts["replayed_proposals"],
        signals=counts["signals"] + counts["replayed_signals"],
        replayed_signals=counts["replayed_signals"],
        emitted=emitted,
        prevented=prevented,
        hold_merges=counts["hold_merges"],
        transformed=transformed,
        still_held=still_held,
        dead_letters=Counter(d["reason"] for d in dead_letters),
        actions_published=None if action_ids is None else len(set(action_ids)),
    )


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(n: int, word: str) -> str:
    return f"{_n(n)} {word}{'' if n == 1 else 's'}"


def _replays(n: int) -> str:
    return f" ({_n(n)} replayed)" if n else ""


def summary_lines(t: DemoTally, approved_topic: str = "approved-actions") -> list[str]:
    """The summary a newcomer reads: before and after, what was prevented and changed, by
    kind, and whether the numbers add up. Every number counts records or decisions."""
    dead = sum(t.dead_letters.values())
    inputs = [
        _plural(t.proposals, "proposal") + _replays(t.replayed_proposals),
        _plural(t.signals, "signal") + _replays(t.replayed_signals),
    ]
    if dead:
        inputs.append(f"{_n(dead)} malformed")
    lines = [f"  {_plural(t.records_in, 'record')} from agents: {', '.join(inputs)}"]
    before, after = _n(t.proposals), _n(t.actions)
    width = max(len(before), len(after))
    lines += [
        "",
        f"  without the tower  {before:>{width}} messages: every proposal sent as proposed",
        f"  with the tower     {after:>{width}} actions: {_actions_detail(t.emitted)}",
        "",
    ]
    prevented = []
    for key, n in sorted(t.prevented.items(), key=lambda kv: (-kv[1], kv[0])):
        label, what = PREVENTED.get(key, (key, f"suppressed by {key}"))
        if key == "duplicate" and t.hold_merges:
            what = f"{what} ({_n(t.hold_merges)} in hold windows)"
        prevented.append((n, label, what))
    changed = [
        (n, *TRANSFORMED.get(rule, (rule, f"changed by {rule}")))
        for rule, n in sorted(t.transformed.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    rows = prevented + changed
    num_w = max((len(_n(n)) for n, _, _ in rows), default=1)
    label_w = max((len(label) for _, label, _ in rows), default=1)

    def row(n: int, label: str, what: str) -> str:
        return f"    {_n(n):>{num_w}}  {label:<{label_w}}  {what}"

    total = sum(t.prevented.values())
    lines.append(
        f"  prevented {_plural(total, 'proposal')}, each counted once, by the rule that stopped it:"
        if total
        else "  prevented nothing: every proposal went out"
    )
    lines += [row(*r) for r in prevented]
    if t.still_held:
        lines.append(
            f"  still held: {_plural(t.still_held, 'proposal')} waiting for their hold "
            "window's deadline when reading stopped"
        )
    if changed:
        lines.append(
            f"  changed on the way out, {_n(sum(t.transformed.values()))} times "
            "(one action can be changed more than once):"
        )
        lines += [row(*r) for r in changed]
    if dead:
        reasons = ", ".join(f"{r} {_n(n)}" for r, n in sorted(t.dead_letters.items()))
        lines.append(f"  dead-lettered {_plural(dead, 'malformed record')}, by reason:")
        lines += textwrap.wrap(reasons, WIDTH, initial_indent="    ", subsequent_indent="    ")
    lines += ["", *_reconciliation(t, dead, approved_topic)]
    return [part for line in lines for part in _fit(line)]


def _fit(line: str) -> list[str]:
    """A line wrapped at WIDTH, continued two spaces deeper than it starts."""
    if len(line) <= WIDTH:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, WIDTH, subsequent_indent=indent)


def _actions_detail(emitted: Counter[str]) -> str:
    parts = [f"{_n(emitted['approved'])} approved"]
    if emitted["deferred"]:
        parts.append(f"{_n(emitted['deferred'])} deferred to the morning")
    if emitted["escalated"]:
        parts.append(f"{_n(emitted['escalated'])} routed to a human")
    return ", ".join(parts)


def _reconciliation(t: DemoTally, dead: int, approved_topic: str) -> list[str]:
    """Do the numbers add up: every record decided, every audited action published?"""
    decided = t.accounted == t.records_in
    published = t.actions_published is None or t.actions_published == t.actions
    pad = " " * len("  reconciles: ")
    lines = textwrap.wrap(
        f"  reconciles: {'yes' if decided and published else 'NO'}, "
        f"{_plural(t.records_in, 'record')} in, decided {_plural(t.proposals, 'proposal')} + "
        f"{_plural(t.signals, 'signal')} + {_plural(dead, 'dead letter')}",
        WIDTH,
        subsequent_indent=pad,
    )
    missing = t.records_in - t.accounted
    if missing > 0:
        lines.append(f"{pad}{_n(missing)} not decided within the wait")
    elif missing < 0:
        lines.append(f"{pad}{_n(-missing)} decided that the demo did not send")
    if t.actions_published is not None:
        lines.append(
            f"{pad}{_plural(t.actions, 'action')} audited, {_n(t.actions_published)} on "
            f"{approved_topic}{'' if published else ' (they should be equal)'}"
        )
    return lines


def pick_customer(audits: Iterable[Mapping[str, Any]]) -> tuple[str, list[str]] | None:
    """The customer whose decisions show the most different outcomes and rules, with them:
    the one to open on the customer page."""
    seen: dict[str, set[str]] = {}
    count: Counter[str] = Counter()
    for a in audits:
        if a.get("kind") in NOT_DECISIONS or a["outcome"] in ("held", "recorded"):
            continue
        label = f"{a['outcome']}/{a['rule']}" if a.get("rule") else a["outcome"]
        seen.setdefault(a["customer_id"], set()).add(label)
        count[a["customer_id"]] += 1
    if not seen:
        return None
    best = min(seen, key=lambda c: (-len(seen[c]), -count[c], c))
    return best, sorted(seen[best])


def agent_view_lines(ctx: Mapping[str, Any], advice: Preflight, what: str) -> list[str]:
    """What one agent sees through the API: the context it grounds on, then a preflight."""

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")

    consents = [
        f"{c['channel']}:{c['purpose']} {'granted' if c['granted'] else 'withdrawn'}"
        for c in ctx["consents"]
    ]
    caps = [
        f"{c['cap']}{'' if c['value'] is None else ' ' + c['value']} {c['used']}/{c['limit']}"
        for c in ctx["caps"]
        if c["used"]
    ]
    told = [f"{f['fact']}={f['value']} ({f['agent']})" for f in ctx["facts_told"]]
    qh = ctx["quiet_hours"]
    quiet = f"quiet until {iso(qh['next_allowed_send'])}" if qh["quiet_now"] else "not quiet now"
    human = ctx["escalation"]["needs_human"]
    verdict = advice.outcome if advice.rule is None else f"{advice.outcome} by {advice.rule}"
    lines = [
        f"  one agent's view of {ctx['customer_id']} (GET /api/v1/customers/.../context):",
        f"    consents     {', '.join(consents) or 'none'}",
        f"    caps used    {', '.join(caps) or 'none'}",
        f"    open cases   {', '.join(c['case_id'] for c in ctx['open_cases']) or 'none'}",
        f"    facts told   {', '.join(told) or 'none'}",
        f"    time zone    {ctx['timezone']}, {quiet} (as of {iso(ctx['as_of'])})",
        f"    a human owns the conversation: {'yes' if human else 'no'}",
        f"  preflight of {what} (POST /api/v1/preflight, advisory: nothing stored):",
        f"    would be {verdict}: {advice.reason}",
    ]
    return [piece for line in lines for piece in _fit(line)]
