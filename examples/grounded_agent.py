"""A grounded agent: ask the tower what it knows, plan on it, preflight, then write and send.

    tower demo --keep          # another terminal: a broker, a worker and its pages
    TOWER_TOPIC_EVENTS=demo-agent-events TOWER_TOPIC_AUDIT=demo-audit \
        python examples/grounded_agent.py --customer cust-00042

Every setting comes from the environment, as the worker reads it (TOWER_BOOTSTRAP,
TOWER_TOPIC_*, TOWER_URL or TOWER_WEB_PORT, TOWER_TOKEN); `tower demo --keep` prints the
line for its topics. A customer the tower has not met yet has an empty context
(`known` is False): the plan rests on the policy alone, and the preflight judges it.

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

from pipeline.client import ProposalFields, TowerClient, TowerError

AGENT, DEPARTMENT = "winback-bot", "marketing"
#: a message may be held for the policy's hold window (30 s in the demo's) before it is decided
HOLD_WAIT_S = 90.0
CHANNELS = ("email", "push", "sms", "in_app")  # in order of preference


def when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


def consented(ctx: dict[str, Any], channel: str, purpose: str) -> bool | None:
    """The newest consent mark that covers the channel and purpose, as the consent rule
    reads them (`*` is every channel, `all` every purpose); None without one: whether an
    opt-in is needed is the policy's to say, and the preflight says it."""
    marks = [
        c
        for c in ctx["consents"]
        if c["channel"] in (channel, "*") and c["purpose"] in (purpose, "all")
    ]
    if not marks:
        return None
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
    # never a channel the customer refused or a cap has no room on; an opt-in first
    open_ = [
        ch
        for ch in CHANNELS
        if consented(ctx, ch, category) is not False and headroom(ctx, ch, category) != 0
    ]
    usable = sorted(open_, key=lambda ch: consented(ctx, ch, category) is None)
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
    parser.add_argument("--bootstrap", help="Kafka [default: TOWER_BOOTSTRAP, 127.0.0.1:9092]")
    parser.add_argument("--web-url", help="a worker [default: TOWER_URL, else TOWER_WEB_PORT]")
    parser.add_argument("--customer", default="cust-00042")
    args = parser.parse_args()
    try:
        return run(TowerClient(args.bootstrap, args.web_url), args.customer)
    except TowerError as exc:
        print(f"error: {exc}")
        return 1


def run(client: TowerClient, customer: str) -> int:
    with client as tower:
        ctx = tower.context(customer)
        if not ctx["known"]:
            print(f"{customer} is new to the tower: the plan rests on the policy alone")
        draft, why = plan(ctx)
        print(f"plan: {why}")
        if draft is None:
            return 0
        check = tower.preflight(customer, **draft)
        print(f"preflight: {check.outcome} ({check.rule or 'no rule objected'}): {check.reason}")
        if not check.approved:
            return 0  # nothing generated, nothing sent
        draft["content"] = write_reply(ctx, draft)
        event_id = tower.propose(customer, **draft)
        print(f"proposed {event_id}: {draft['content']}")
        decision = tower.wait_decision(event_id, timeout_s=HOLD_WAIT_S)
        print(f"decision: {decision['outcome']} ({decision['rule'] or '-'}): {decision['reason']}")
        if decision["action_id"]:
            print(f"action {decision['action_id']} is on approved-actions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
