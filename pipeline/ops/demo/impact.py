"""The demo's proof of impact: a closed-loop campaign whose true effect is known, measured
by `tower report` over the audit topic."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.core.decision import EMITTING
from pipeline.core.policy import Policy
from pipeline.ops.demo.readback import read_outputs
from pipeline.ops.demo.traffic import send
from pipeline.ops.outcome_world import Effect, OutcomeWorld
from pipeline.ops.report_commands import impact_rows, write_html
from pipeline.settings import Settings
from pipeline.web.report_html import text_table

#: The truth of the demo's closed loop (`measure_impact`): winback messages lift purchases
#: from 20 % to 30 %; upsell offers drive customers to unsubscribe (3 % -> 12 %).
IMPACT_EFFECTS = (
    Effect("winback-bot", purchase_if_received=0.30, purchase_otherwise=0.20),
    Effect(
        "upsell-bot",
        category="sales",
        action="offer",
        purchase_if_received=0.05,
        purchase_otherwise=0.05,
        unsubscribe_if_received=0.12,
        unsubscribe_otherwise=0.03,
    ),
)
#: Campaign day of the closed loop, event time: after the showcase traffic, in UTC daytime.
IMPACT_START_MS = 1_767_340_800_000  # 2026-01-02 08:00 UTC
REPORT_PATH = Path("var/demo-report.html")


def measure_impact(
    settings: Settings, policy: Policy, policy_file: Path, customers: int, produced: int
) -> None:
    """A closed loop whose truth is known (IMPACT_EFFECTS): the agents' campaign, the
    customers' answers to what they received, then `tower report` over the audit topic."""
    echo = click.echo
    ex = policy.experiments
    echo()
    echo(click.style("Proof of impact: a campaign whose true effect is known", bold=True))
    if not ex.armed:
        echo("  skipped: the policy has no experiments: block (control_group, holdouts)")
        return
    holdouts = ", ".join(f"{a} {s:.0%}" for a, s in ex.holdouts.items())
    echo(
        f"  control group {ex.control_group.share:.0%} of customers "
        f"({', '.join(sorted(ex.control_group.categories))}); holdouts: {holdouts or 'none'}"
    )
    for e in IMPACT_EFFECTS:
        echo(
            f"  truth: {e.agent} received -> purchase {e.purchase_if_received:.0%}, unsubscribe "
            f"{e.unsubscribe_if_received:.0%}; not received -> {e.purchase_otherwise:.0%}, "
            f"{e.unsubscribe_otherwise:.0%}"
        )
    world = OutcomeWorld(IMPACT_EFFECTS, customers, IMPACT_START_MS, prefix="impact-")
    produced += send(settings, world.opening(), "campaign")
    out = read_outputs(settings, produced, timeout=90)
    received = {
        (a["customer_id"], a["agent"]): True
        for a in out.audits
        if a["kind"] == "proposal" and a["outcome"] in EMITTING
    }
    produced += send(settings, world.answers(received), "customers answering")
    read_outputs(settings, produced, timeout=90)
    notes: list[str] = []
    rows, source = impact_rows(settings, [policy_file], notes.append)
    echo(f"  tower report: {source}")
    for line in text_table(rows):
        echo(f"  {line.rstrip()}")
    for note in notes:
        echo(f"  note: {note}")
    write_html(REPORT_PATH, rows, source, notes)
    echo(f"  the same as a page with charts: {REPORT_PATH} (tower report --html FILE)")
