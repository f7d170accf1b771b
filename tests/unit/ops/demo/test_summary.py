"""The demo's summary without a broker: its arithmetic and wording, and the agent's view."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pipeline.ops.demo.summary import (
    PREVENTED,
    TRANSFORMED,
    WIDTH,
    DemoTally,
    pick_customer,
    summary_lines,
    tally,
)

EVENTS = "demo-agent-events"


def audit(
    n: int,
    outcome: str,
    rule: str | None = None,
    *,
    kind: str = "proposal",
    customer: str = "cust-1",
    offset: int | None = None,
    source_topic: str = EVENTS,
    transforms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A decoded audit record with the fields the summary reads."""
    trace = [{"rule": "replay", "verdict": "pass", "reason": "first time"}]
    trace += [{"rule": r, "verdict": "transform", "reason": "changed"} for r in transforms]
    return {
        "decision_id": f"d-{n}",
        "event_id": f"e-{n}",
        "customer_id": customer,
        "kind": kind,
        "outcome": outcome,
        "rule": rule,
        "trace": trace,
        "source_topic": source_topic,
        "source_partition": 0,
        "source_offset": n if offset is None else offset,
    }


def test_each_input_counts_once_with_its_final_decision() -> None:
    audits = [
        audit(1, "approved", transforms=("disclosure", "pii_redaction")),
        audit(1, "approved", transforms=("disclosure", "pii_redaction")),  # re-emit
        audit(2, "held", "hold_window"),
        audit(3, "held", "hold_window"),
        audit(2, "approved", offset=900, source_topic="demo-tower-wakeups"),
        audit(3, "merged", "hold_window", offset=900, source_topic="demo-tower-wakeups"),
        audit(4, "merged", "duplicate_merge"),
        audit(5, "suppressed", "consent"),
        audit(6, "deferred", "quiet_hours", transforms=("disclosure",)),
        audit(7, "escalated", "escalation"),
        audit(8, "recorded", kind="signal"),
        audit(8, "duplicate", "replay", kind="signal", offset=20),  # a replayed signal
        audit(5, "duplicate", "replay", offset=21),  # a replayed proposal, same decision id
        audit(5, "duplicate", "replay", offset=22),  # and again
        audit(9, "held", "hold_window"),  # never released before reading stopped
        {**audit(10, "policy_changed", kind="policy"), "customer_id": "-"},
    ]
    dead = [{"reason": "bad_json"}, {"reason": "bad_json"}, {"reason": "key_mismatch"}]
    t = tally(audits, dead, records_in=15, action_ids=["a-1", "a-2", "a-6", "a-7", "a-1"])

    assert t.proposals == 10  # 1-7 and 9, plus the two replays of 5
    assert (t.replayed_proposals, t.signals, t.replayed_signals) == (2, 2, 1)
    assert t.emitted == Counter(approved=2, deferred=1, escalated=1)
    assert t.prevented == Counter(duplicate=2, replay=2, consent=1)
    assert t.hold_merges == 1
    assert t.still_held == 1
    assert t.transformed == Counter(disclosure=2, pii_redaction=1)
    assert t.dead_letters == Counter(bad_json=2, key_mismatch=1)
    assert (t.actions, t.actions_published) == (4, 4)
    assert t.accounted == t.records_in == 15
    # without the tower every proposal goes out: what went out + what was prevented + held
    assert t.proposals == t.actions + sum(t.prevented.values()) + t.still_held


def test_summary_says_what_each_number_counts() -> None:
    t = DemoTally(
        records_in=4500,
        proposals=3912,
        replayed_proposals=40,
        signals=576,
        replayed_signals=8,
        emitted=Counter(approved=480, deferred=15, escalated=5),
        prevented=Counter(
            duplicate=2342, replay=40, consent=109, quiet_hours=57, frequency_cap=859
        ),
        hold_merges=600,
        transformed=Counter(disclosure=300, max_length=12),
        dead_letters=Counter(bad_json=7, key_mismatch=5),
        actions_published=500,
    )
    lines = summary_lines(t, "demo-approved-actions")
    text = "\n".join(lines)

    first = lines[: lines.index("")]  # wrapped if need be, so that it fits a terminal
    assert " ".join(line.strip() for line in first) == (
        "4,500 records from agents: 3,912 proposals (40 replayed), 576 signals (8 replayed), "
        "12 malformed"
    )
    assert "  without the tower  3,912 messages: every proposal sent as proposed" in lines
    assert (
        "  with the tower       500 actions: 480 approved, 15 deferred to the morning, "
        "5 routed to a human"
    ) in lines
    assert "  prevented 3,407 proposals, each counted once, by the rule that stopped it:" in lines
    assert "    2,342  duplicates" in text and "(600 in hold windows)" in text
    assert "      109  without consent" in text
    assert "       57  in quiet hours" in text
    assert "  dead-lettered 12 malformed records, by reason:" in lines
    assert "    bad_json 7, key_mismatch 5" in lines
    assert lines[-2] == (
        "  reconciles: yes, 4,500 records in, decided 3,912 proposals + 576 signals + "
        "12 dead letters"
    )
    assert lines[-1].strip() == "500 actions audited, 500 on demo-approved-actions"

    # Largest first; counts right-aligned and labels in one column, prevented and changed alike.
    rows = [line for line in lines if re.match(r"^ {4}[ \d,]+\d  \S", line)]
    assert [r.split()[0] for r in rows] == ["2,342", "859", "109", "57", "40", "300", "12"]
    assert len({r.index(r.split()[1]) for r in rows}) == 1
    assert all(len(line) <= WIDTH for line in lines)


def test_summary_admits_when_numbers_do_not_add_up() -> None:
    t = tally([audit(1, "approved")], [], records_in=3, action_ids=[])
    lines = summary_lines(t)
    assert lines[-3] == (
        "  reconciles: NO, 3 records in, decided 1 proposal + 0 signals + 0 dead letters"
    )
    assert lines[-2] == "              2 not decided within the wait"
    assert (
        lines[-1] == "              1 action audited, 0 on approved-actions (they should be equal)"
    )
    assert "  prevented nothing: every proposal went out" in lines


def test_every_prevented_kind_has_a_label_and_unknown_rules_still_show() -> None:
    t = tally([audit(1, "suppressed", "some_new_rule")], [], records_in=1)
    assert "    1  some_new_rule  suppressed by some_new_rule" in summary_lines(t)
    labels = [label for label, _ in PREVENTED.values()] + [lb for lb, _ in TRANSFORMED.values()]
    assert len(labels) == len(set(labels))


def test_pick_customer_prefers_the_most_varied_story() -> None:
    audits = [
        audit(1, "approved", customer="cust-a"),
        audit(2, "approved", customer="cust-a"),
        audit(3, "approved", customer="cust-b"),
        audit(4, "suppressed", "consent", customer="cust-b"),
        audit(5, "held", "hold_window", customer="cust-c"),
        audit(6, "merged", "hold_window", customer="cust-c"),
    ]
    assert pick_customer(audits) == ("cust-b", ["approved", "suppressed/consent"])
    assert pick_customer([]) is None


def test_long_lines_wrap_to_fit_a_terminal() -> None:
    big = 12_345_678
    t = DemoTally(
        records_in=big,
        proposals=big,
        replayed_proposals=big,
        signals=big,
        replayed_signals=big,
        emitted=Counter(approved=big, deferred=big, escalated=big),
        dead_letters=Counter(bad_json=big, key_mismatch=big, missing_field=big, unknown_format=big),
        actions_published=big,
    )
    lines = summary_lines(t, "demo-approved-actions")
    assert all(len(line) <= WIDTH for line in lines)
    assert any(line.startswith("    ") and "routed to a human" in line for line in lines)


def test_the_agent_view_shows_the_context_and_the_preflight() -> None:
    from pipeline.client import Preflight
    from pipeline.core.agent_context import agent_context
    from pipeline.core.policy import DEFAULT_POLICY
    from pipeline.ops.demo.summary import agent_view_lines
    from tests.factories import T0, consent, decide_all, signal

    _, state = decide_all(
        [consent(True, "email", "marketing"), signal("case_opened", case_id="k9", at=T0 + 1)],
        DEFAULT_POLICY,
    )
    ctx = agent_context("c1", state, DEFAULT_POLICY, T0 + 2)
    advice = Preflight.from_json(
        {
            "api_version": "v1",
            "advisory": True,
            "note": "advisory",
            "event_id": "e1",
            "customer_id": "c1",
            "decision_id": "d-1",
            "outcome": "suppressed",
            "rule": "service_first",
            "reason": "case k9 is open",
            "trace": [],
            "content": None,
            "action": None,
            "policy_version": DEFAULT_POLICY.policy_version,
            "served_by": "http://w:1",
        }
    )
    text = "\n".join(agent_view_lines(ctx, advice, "a marketing email"))
    assert "email:marketing granted" in text and "open cases   k9" in text
    assert "would be suppressed by service_first: case k9 is open" in text
    assert "a human owns the conversation: no" in text
