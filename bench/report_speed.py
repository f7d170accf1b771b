"""Time of `tower report` over an audit topic of N records (default 1,000,000).

The audit records come from the real decision path without a broker (`BatchProcessor` on a
closed-loop campaign, `pipeline/ops/outcome_world.py`, under a policy with a control group
and two holdouts), are loaded onto a topic of a private broker, and then the report is
timed end to end (scan, decode, count, statistics), as `tower report` runs it.

Run: `python -m bench.report_speed [--records N] [--bootstrap B]`.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import click

from bench.common import create_plain_topics, produce_all, start_broker
from pipeline.contracts.codec import decode_record, encode_event
from pipeline.core.impact import ImpactLedger
from pipeline.core.policy_document import load_policy
from pipeline.ops.outcome_world import Effect, OutcomeWorld
from pipeline.ops.report_commands import impact_rows
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings, TopicNames
from pipeline.web.report_html import text_table

EFFECTS = (
    Effect("winback-bot", purchase_if_received=0.30, purchase_otherwise=0.20),
    Effect("upsell-bot", category="sales", unsubscribe_if_received=0.1, unsubscribe_otherwise=0.03),
)
POLICY_YAML = """\
version: 1.0.0-report-bench
agents: [winback-bot, upsell-bot]
caps: []
experiments:
  salt: bench
  control_group: {share: 0.10, categories: [marketing, sales]}
  holdouts: {winback-bot: 0.2, upsell-bot: 0.1}
"""
POLICY = load_policy(POLICY_YAML)


def audit_values(records: int, settings: Settings) -> list[tuple[bytes, bytes]]:
    """About `records` audit records: an opt-in and two proposals per customer, then answers."""
    world = OutcomeWorld(EFFECTS, max(1, int(records / 3.31)), 1_767_340_800_000)
    bp = BatchProcessor(settings, policy=lambda: POLICY, clock=lambda: 1.0)
    store = DictStateStore()
    audits: list[tuple[bytes, bytes]] = []
    received: dict[tuple[str, str], bool] = {}
    offset = 0

    def run(events: list) -> None:
        nonlocal offset
        for i in range(0, len(events), 5_000):
            batch = [
                InputRecord(e.customer_id.encode(), encode_event(e), 0, offset + j, None)
                for j, e in enumerate(events[i : i + 5_000])
            ]
            offset += len(batch)
            for out in bp.process_and_save(batch, store).outputs:
                if out.topic == settings.topics.audit:
                    audits.append((out.key or b"", out.value))
                elif out.topic == settings.topics.approved:
                    action = decode_record("approved_action", out.value)
                    received[(action["customer_id"], action["agents"][0])] = True

    run(world.opening())
    run(world.answers(received)[: max(0, records - len(audits))])
    return audits


@click.command()
@click.option("--records", default=1_000_000, show_default=True, help="Audit records to report on.")
@click.option("--partitions", default=8, show_default=True)
@click.option("--bootstrap", help="Use this broker instead of starting one.")
@click.option("--kafka-port", default=39592, show_default=True)
def main(records: int, partitions: int, bootstrap: str | None, kafka_port: int) -> None:
    """Seconds of `tower report` over --records audit records, and records/s."""
    work = Path(tempfile.mkdtemp(prefix="tower-report-bench-"))
    tag = uuid.uuid4().hex[:6]
    topics = TopicNames(**{f: f"r{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    started = time.perf_counter()
    values = audit_values(records, Settings(topics=topics))
    click.echo(f"built {len(values):,} audit records in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    ledger = ImpactLedger(lambda v: POLICY if v == POLICY.policy_version else None)
    for _, value in values:
        ledger.add(decode_record("audit_record", value))
    ledger.rows()
    in_memory = time.perf_counter() - started
    click.echo(
        f"decode + count in memory: {in_memory:.1f} s ({len(values) / in_memory:,.0f} records/s)"
    )
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    try:
        create_plain_topics(bootstrap, [topics.audit, topics.policies], partitions)
        produce_all(bootstrap, topics.audit, values)
        settings = Settings(bootstrap=bootstrap, topics=topics)
        policy_file = work / "policy.yaml"
        policy_file.write_text(POLICY_YAML)
        started = time.perf_counter()
        rows, source = impact_rows(
            settings, [policy_file], lambda m: click.echo(f"warning: {m}", err=True)
        )
        seconds = time.perf_counter() - started
    finally:
        if broker is not None:
            broker.down()
    for line in text_table(rows):
        click.echo(line)
    click.echo(source)
    click.echo(
        f"tower report over {len(values):,} audit records: {seconds:.1f} s "
        f"({len(values) / seconds:,.0f} records/s) on a broker, {in_memory:.1f} s in memory"
    )


if __name__ == "__main__":
    main()
