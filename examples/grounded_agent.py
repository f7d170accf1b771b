"""A grounded agent: ask the tower what it knows, plan on it, preflight, then write and send.

    python examples/grounded_agent.py --customer cust-42

The "LLM" is a template function (`write_reply`), so this runs anywhere; put a model call
there. The order is the point: the context first, so the plan respects consents, caps,
quiet hours, open cases and a human who took over, and the reply never contradicts what
the customer was told or asks for what is known; then a preflight, so nothing is generated
for a proposal the tower would not let through; then the proposal and its decision (the
preflight is advisory: only the decision is binding).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pipeline.client import ProposalFields, TowerClient, UnknownCustomer

AGENT, DEPARTMENT = "winback-bot", "marketing"
CHANNELS = ("email", "push", "sms", "in_app")  # in order of preference


def when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


def consented(ctx: dict[str, Any], channel: str, purpose: str) -> bool:
    """The newest consent mark that covers the channel and purpose, as the consent rule
    reads them (`*` is every channel, `all` every purpose). Without one, only marketing
    and sales need an opt-in (the default policy; the preflight has the final word)."""
    marks = [
        c
        for c in ctx["consents"]
        if c["channel"] in (channel, "*") and c["purpose"] in (purpose, "all")
    ]
    if not marks:
        return purpose not in ("marketing", "sales")
    return bool(max(marks, key=lambda c: c["at"])["granted"])


def headroom(ctx: dict[str, Any], channel: str, category: str) -> int | None:
    """Contacts left under the tightest cap that would count this one (None: no cap has
    counted a contact like it yet)."""
    ours = {"all": None, "channel": channel, "category": category, "department": DEPARTMENT}
    left = [
        c["headroom"]
        for c in ctx["caps"]
        if c["scope"] in ours
        and c["value"] == ours[c["scope"]]
        and category not in c.get("exempt_categories", ())
    ]
    return min(left, default=None)


def plan(ctx: dict[str, Any]) -> tuple[ProposalFields | None, str]:
    """What to do, grounded on the context, or None and why to stay silent."""
    escalation, quiet = ctx["escalation"], ctx["quiet_hours"]
    if escalation["needs_human"]:
        return None, f"a human owns this conversation since {when(escalation['since'])}"
    # an open case comes first: answer it (service), never market on top of it
    category, action = ("service", "answer") if ctx["open_cases"] else ("marketing", "message")
    quiet_now = quiet.get("categories", {}).get(category) if quiet["quiet_now"] else None
    next_send = when(quiet["next_allowed_send"])
    if quiet_now == "suppress":
        return None, f"quiet hours: {category} may be sent from {next_send}"
    usable = [
        ch for ch in CHANNELS if consented(ctx, ch, category) and headroom(ctx, ch, category) != 0
    ]
    if not usable:
        return None, f"no channel with {category} consent and cap headroom"
    told = {f["fact"]: f["value"] for f in ctx["facts_told"]}
    offer_id, asserts = None, {}
    if ctx["offer"] is None and category == "marketing":  # no competing offer is active
        # restate a discount only as it was told: the consistency ledger checks `asserts`
        offer_id, asserts = "WINBACK10", {"discount": told.get("discount", "10%")}
    draft: ProposalFields = {
        "agent": AGENT,
        "department": DEPARTMENT,
        "channel": usable[0],
        "action": action,
        "category": category,
        "offer_id": offer_id,
        "asserts": asserts,
        "ai_generated": True,
    }
    why = f"{category} {action} on {usable[0]}"
    if quiet_now == "defer":
        why += f" (quiet hours: the tower defers it to {next_send})"
    return draft, why


def write_reply(ctx: dict[str, Any], draft: ProposalFields) -> str:
    """The stub "LLM": a template filled from the context, using what is known instead of
    asking for it again."""
    known = {f["fact"]: f["value"] for f in ctx["facts_known"]}
    hello = f"Hi {known['first_name']}" if "first_name" in known else "Hello"
    if draft["category"] == "service":
        case = ctx["open_cases"][0]["case_id"]
        order = f" about order {known['order_number']}" if "order_number" in known else ""
        return f"{hello}, we are on your case {case}{order} and will be back to you shortly."
    asserts = draft.get("asserts") or {}
    if draft.get("offer_id"):
        return f"{hello}, still thinking about it? Here is {asserts['discount']} off."
    return f"{hello}, still thinking about it? Your basket is waiting."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--web-url", default="http://127.0.0.1:6066")
    parser.add_argument("--customer", default="cust-42")
    args = parser.parse_args()
    with TowerClient(args.bootstrap, args.web_url) as tower:
        try:
            ctx = tower.context(args.customer)
        except UnknownCustomer as exc:
            print(f"{exc}\n  nothing to ground a reply on")
            return 1
        draft, why = plan(ctx)
        print(f"plan: {why}")
        if draft is None:
            return 0
        check = tower.preflight(args.customer, **draft)
        print(f"preflight: {check.outcome} ({check.rule or 'no rule objected'}): {check.reason}")
        if not check.approved:
            return 0  # nothing generated, nothing sent
        draft["content"] = write_reply(ctx, draft)
        event_id = tower.propose(args.customer, **draft)
        print(f"proposed {event_id}: {draft['content']}")
        decision = tower.wait_decision(event_id)
        print(f"decision: {decision['outcome']} ({decision['rule'] or '-'}): {decision['reason']}")
        if decision["action_id"]:
            print(f"action {decision['action_id']} is on approved-actions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
