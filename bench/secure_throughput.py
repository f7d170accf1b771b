"""What TLS and SASL cost: each runtime's backlog throughput on a PLAINTEXT broker and on a
SASL_SSL broker (SCRAM-SHA-512, ACLs, `tower kafka up --secure`), same run, same records.

    python -m bench.secure_throughput --events 40000

The worker on the secured broker connects as the `tower` role, the harness as its admin;
the figure is `bench.throughput`'s (records over first-to-last output timestamp).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import click

from bench.common import FULL_POLICY_FILE, machine, results_option, secured, start_broker
from bench.throughput import _records, _run_contender
from pipeline.ops.local_kafka import LocalKafka

#: runtime -> its `bench.throughput` contender
CONTENDER = {"transactional": "native", "faust": "tower"}


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--events", default=40_000, show_default=True, help="Backlog records per run.")
@click.option("--customers", default=5_000, show_default=True, help="Distinct customers.")
@click.option("--partitions", default=8, show_default=True, help="Partitions of every topic.")
@click.option(
    "--runtimes",
    default="transactional,faust",
    show_default=True,
    help="Comma list of runtimes to measure on both brokers.",
)
@click.option(
    "--kafka-port",
    default=39492,
    show_default=True,
    help="The PLAINTEXT broker's port; the SASL_SSL one uses port+4 (controllers: +1).",
)
@results_option
def main(
    events: int,
    customers: int,
    partitions: int,
    runtimes: str,
    kafka_port: int,
    results: Path | None,
) -> None:
    """Throughput over SASL_SSL / throughput over PLAINTEXT per runtime (target >= 0.85)."""
    chosen = [r.strip() for r in runtimes.split(",") if r.strip()]
    if unknown := set(chosen) - set(CONTENDER):
        raise click.BadParameter(f"unknown runtime(s) {sorted(unknown)}", param_hint="runtimes")
    work = Path(tempfile.mkdtemp(prefix="tower-bench-secure-"))
    records = _records(events, customers, seed=3)
    plain_bootstrap, plain = start_broker(None, kafka_port, work / "kafka-plain")
    secure = LocalKafka(
        port=kafka_port + 4, run_dir=work / "kafka-secure", out=sys.stderr, secure=True
    )
    report: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "runs": {}}
    try:
        secure.up()
        for runtime in chosen:
            rates = {}
            for label, bootstrap, broker in (
                ("plaintext", plain_bootstrap, plain),
                ("sasl_ssl", secure.bootstrap, secure),
            ):
                pid = broker.status().pid if broker else None
                with secured(secure) if label == "sasl_ssl" else contextlib.nullcontext():
                    r = _run_contender(
                        CONTENDER[runtime], bootstrap, records, partitions, work,
                        uuid.uuid4().hex[:6], FULL_POLICY_FILE, 600.0, False, pid,
                    )  # fmt: skip
                rates[label] = {"events_per_s": r.rate, "records": r.records, "cores": r.cores}
            ratio = rates["sasl_ssl"]["events_per_s"] / (rates["plaintext"]["events_per_s"] or 1)
            report["runs"][runtime] = {**rates, "ratio": ratio}
    finally:
        secure.down()
        if plain is not None:
            plain.down()
    click.echo(
        f"\n{'runtime':<15}{'PLAINTEXT/s':>13}{'SASL_SSL/s':>12}{'ratio':>8}  (target >= 0.85)"
    )
    for runtime, run in report["runs"].items():
        click.echo(
            f"{runtime:<15}{run['plaintext']['events_per_s']:>13.0f}"
            f"{run['sasl_ssl']['events_per_s']:>12.0f}{run['ratio']:>8.3f}"
            f"  {'met' if run['ratio'] >= 0.85 else 'MISSED'}"
        )
    (work / "results.json").write_text(json.dumps(report, indent=2))
    if results:
        results.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")


if __name__ == "__main__":
    main()
