"""`tower report`: proof of impact, read from the audit topic (the source of truth).

Per experiment (the global control group, each agent holdout) and metric: exposed customers
per arm, the rate or mean per arm, the lift (treatment - control) with a 95 % interval, and
a verdict in plain words. `pipeline/core/impact.py` counts, `lift_stats.py` computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from pipeline.core.impact import ImpactLedger
from pipeline.core.policy_document import PolicyError
from pipeline.kafka.reader import ScanError
from pipeline.ops.audit_commands import audit_records
from pipeline.ops.cli_errors import friendly_errors
from pipeline.ops.replay_policies import policy_resolver
from pipeline.settings import Settings
from pipeline.web.report_html import render_html, text_table


@click.command("report")
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} instead of a table.')
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML report with a chart per experiment.",
)
@click.option(
    "--policy",
    "policy_files",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A policy YAML the audit records may name (repeatable), for its attribution window "
    "and complaint threshold; published versions are always known.",
)
@click.option(
    "--bootstrap",
    help=f"Kafka bootstrap servers [default: TOWER_BOOTSTRAP or {Settings().bootstrap}].",
)
@friendly_errors(ScanError, PolicyError)
def report_command(
    as_json: bool, html_file: Path | None, policy_files: tuple[Path, ...], bootstrap: str | None
) -> None:
    """What the agents caused: treatment against control, per experiment and metric.

    \b
    Experiments come from the policy's `experiments:` block:
      control_group      customers who get no proposal of the listed categories
      holdout:<agent>    customers withheld from one agent
    A customer's first approved or withheld proposal of an arm opens their attribution
    window (event time). Inside it count: conversion (purchase), revenue (its amount, mean
    per exposed customer), unsubscribe (consent withdrawn), complaint (sentiment below the
    policy's threshold), repeat_contact, csat (mean per responder).

    \b
    Lift is treatment - control with a 95 % interval: Newcombe's method for proportions,
    Welch for means. Verdict: helps / hurts when the interval excludes 0 on one side,
    otherwise "can't tell yet" (collect more exposures, or the effect is small).
    """
    settings = Settings.from_env(bootstrap=bootstrap)
    notes: list[str] = []

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)
        notes.append(message)

    rows, source = impact_rows(settings, policy_files, warn)
    click.echo(source, err=True)
    if as_json:
        click.echo(orjson.dumps({"rows": rows}, option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        click.echo(
            "no experiment exposures in the audit: add an experiments: block (control_group, "
            "holdouts) to the policy and publish it (docs/policy.md, Experiments and proof of "
            "impact)"
        )
    else:
        for line in text_table(rows):
            click.echo(line)
    if html_file is not None:
        write_html(html_file, rows, source, notes)
        click.echo(f"wrote {html_file}", err=True)


def impact_rows(
    settings: Settings, policy_files: Iterable[Path], warn: Callable[[str], None]
) -> tuple[list[dict[str, Any]], str]:
    """The report's rows from the whole audit topic, and a line saying what was read."""
    ledger = ImpactLedger(policy_resolver(policy_files, settings, warn))
    started = time.perf_counter()
    for _, record in audit_records(settings):
        ledger.add(record)
    rows = ledger.rows()
    seconds = time.perf_counter() - started
    if ledger.unknown_policies:
        versions = ", ".join(sorted(ledger.unknown_policies))
        warn(f"policy versions not found (defaults used for their windows): {versions}")
    source = (
        f"audit topic {settings.topics.audit!r} on {settings.bootstrap}, "
        f"{ledger.records:,} records read in {seconds:.1f} s"
    )
    return rows, source


def write_html(path: Path, rows: list[dict[str, Any]], source: str, notes: list[str]) -> None:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = render_html(rows, generated_at=generated, source=source, notes=notes)
    path.write_text(page, encoding="utf-8")
