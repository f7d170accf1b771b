"""The console's read model: ingest speed, store size, page and API times, the impact report.

1. About --records audit records from the real decision path (`bench.report_speed`: a
   closed-loop campaign under a policy with a control group and two holdouts) are loaded
   onto a private broker's audit topic; the console's ingest (consumer, decode, Arrow batch
   into DuckDB, offsets in the same transaction) reads them all: records/s.
2. The store's bytes per audit record, after a checkpoint.
3. The impact report from the read model at that size, against `tower report` over the
   same topic (--compare-report; the CLI reads and decodes the whole topic).
4. The audit table is grown to --scale-to records inside DuckDB (copies of the records
   under other customer ids, spread over the last week of processing time), and every page
   and JSON answer is timed: p50/p95 of --requests requests through the console's HTTP
   server, computed afresh each time (no cached answer) and as served (cached). The impact
   report is computed in the background (its time is step 3's); its page is timed as
   served from the last report computed.

Run: `python -m bench.console_ingest [--records N] [--scale-to M] [--compare-report]`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from bench.common import (
    cpu_seconds,
    create_plain_topics,
    free_port,
    percentiles,
    produce_all,
    start_broker,
)
from bench.report_speed import POLICY, POLICY_YAML, audit_values
from pipeline.console import app as console_app
from pipeline.console import views
from pipeline.console.experience import ExperienceFeed
from pipeline.console.ingest import Ingest
from pipeline.console.store import Store
from pipeline.ops.console_commands import TopicPolicyActions
from pipeline.ops.report_commands import impact_rows
from pipeline.settings import Settings, TopicNames
from pipeline.web.auth import WebSecurity

WEEK_MS = 7 * 86_400_000
PATHS = (
    "/",
    "/api/console/v1/overview",
    "/?range=week",
    "/agents",
    "/api/console/v1/agents",
    "/dead-letters",
    "/api/console/v1/dead-letters",
    "/report",
    "/api/console/v1/report",
    "/live",
    "/api/console/v1/live?outcome=approved",
    "/policy",
    "/api/console/v1/policy",
    "/customers/{customer}",
    "/api/console/v1/customers/{customer}",
)


def ingest(settings: Settings, store: Store, expected: int) -> tuple[float, float]:
    """Seconds until the store holds `expected` audit records, and the CPU seconds the
    console and its decoding processes spent (the machine may be shared: records per CPU
    second is the figure that does not depend on what else runs)."""
    reader = Ingest(settings, store)
    thread = threading.Thread(target=reader.run, daemon=True)
    before = os.times()
    started = time.perf_counter()
    thread.start()
    workers: set[int] = set()
    while store.counts()["audit"] < expected:
        time.sleep(0.05)
        workers |= set(_children())
    seconds = time.perf_counter() - started
    cpu = os.times()
    own = (cpu.user - before.user) + (cpu.system - before.system)
    children = sum(cpu_seconds(pid) or 0.0 for pid in workers)
    reader.stop()
    thread.join(30)
    return seconds, own + children


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def feed_seconds(store: Store) -> None:
    """The experience metrics' replay of every audit record (the overview's first
    catch-up after a start): records/s and CPU per record."""
    (latest,) = store.query("SELECT max(processed_at) FROM audit")[0]
    feed = ExperienceFeed(store)
    started, cpu_before = time.perf_counter(), _cpu()
    fed = feed.catch_up(now=int(latest))
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu_before
    click.echo(
        f"experience replay: {fed:,} records in {seconds:.1f} s = {fed / seconds:,.0f} records/s, "
        f"{cpu / max(fed, 1) * 1e6:.0f} CPU µs per record ({feed.trends.skipped:,} not "
        f"replayable; load average {os.getloadavg()[0]:.1f})"
    )


def _children() -> list[int]:
    me = os.getpid()
    path = Path(f"/proc/{me}/task/{me}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def grow(store: Store, target: int, now_ms: int) -> None:
    """Copies of the audit records under other customer ids until `target` rows, their
    processing times spread over the last week (the overview's windows see them)."""
    have = store.counts()["audit"]
    copies = max(0, -(-target // have) - 1)
    if copies:
        store.db.execute(
            'INSERT INTO audit SELECT partition, "offset" + k * 100000000, '
            "decision_id || '-' || k, event_id || '-' || k, customer_id || '-' || k, kind, "
            'agent, department, channel, "trigger", outcome, rule, reason, policy_version, '
            "action_id || '-' || k, merged_into || '-' || k, decided_at, processed_at, "
            "experiments, input, collided_with, signal_type, score "
            "FROM (SELECT * FROM audit) a, range(1, ?) t(k)",
            [copies + 1],
        )
    store.db.execute(
        "UPDATE audit SET processed_at = ? - (hash(decision_id) % ?)", [now_ms, WEEK_MS]
    )
    store.db.execute("CHECKPOINT")


def serve(app: web.Application, port: int) -> tuple[asyncio.AbstractEventLoop, web.AppRunner]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    return loop, runner


def time_pages(base: str, customer: str, requests: int, cold: bool, app: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in PATHS:
        url = base + path.format(customer=customer)
        seconds = []
        for _ in range(requests):
            if cold:
                app[console_app.ANSWERS]._cache.clear()
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=120) as r:
                r.read()
            seconds.append(time.perf_counter() - started)
        out[path] = percentiles([s * 1000 for s in seconds])
    return out


@click.command()
@click.option("--records", default=1_000_000, show_default=True, help="Audit records ingested.")
@click.option("--scale-to", default=10_000_000, show_default=True, help="Audit rows for pages.")
@click.option("--requests", default=20, show_default=True, help="Requests per page and mode.")
@click.option("--partitions", default=8, show_default=True)
@click.option("--compare-report", is_flag=True, help="Also time `tower report` on the topic.")
@click.option("--bootstrap", help="Use this broker instead of starting one.")
@click.option("--kafka-port", default=39692, show_default=True)
@click.option(
    "--pages-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only time the pages, over a copy of this read model (a grown one from a run before).",
)
def main(
    records: int,
    scale_to: int,
    requests: int,
    partitions: int,
    compare_report: bool,
    bootstrap: str | None,
    kafka_port: int,
    pages_from: Path | None,
) -> None:
    """Ingest records/s, store bytes per record, page p95, impact report time."""
    work = Path(tempfile.mkdtemp(prefix="tower-console-bench-"))
    if pages_from is not None:
        shutil.copy(pages_from, work / "console.duckdb")
        store = Store.open(work / "console.duckdb")
        pages(store, Settings(app_id="bench-pages"), requests)
        shutil.rmtree(work, ignore_errors=True)
        return
    tag = uuid.uuid4().hex[:6]
    topics = TopicNames(**{f: f"c{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    started = time.perf_counter()
    values = audit_values(records, Settings(topics=topics))
    click.echo(f"built {len(values):,} audit records in {time.perf_counter() - started:.0f} s")
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    try:
        create_plain_topics(
            bootstrap, [topics.audit, topics.deadletter, topics.policies], partitions
        )
        produce_all(bootstrap, topics.audit, values)
        settings = Settings(bootstrap=bootstrap, topics=topics, app_id=f"bench-{tag}")
        store = Store.open(work / "console.duckdb")
        seconds, cpu = ingest(settings, store, len(values))
        click.echo(
            f"ingest: {len(values):,} audit records in {seconds:.1f} s "
            f"= {len(values) / seconds:,.0f} records/s, {len(values) / cpu:,.0f} per CPU second "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        store.db.execute("CHECKPOINT")
        click.echo(f"store: {store.size_bytes() / len(values):.0f} bytes per audit record")

        def lookup(v: str) -> Any:
            return POLICY if v == POLICY.policy_version else None

        started, cpu_before = time.perf_counter(), _cpu()
        report = views.impact_report(store, lookup)
        mine = time.perf_counter() - started
        click.echo(
            f"impact report from the read model at {len(values):,}: {mine:.1f} s "
            f"({_cpu() - cpu_before:.1f} CPU s, load average {os.getloadavg()[0]:.1f})"
        )
        feed_seconds(store)
        if compare_report:
            policy_file = work / "policy.yaml"
            policy_file.write_text(POLICY_YAML)
            started, cpu_before = time.perf_counter(), _cpu()
            rows, _ = impact_rows(settings, [policy_file], lambda m: None)
            cli = time.perf_counter() - started
            same = [r["lift"] for r in rows] == [r["lift"] for r in report["rows"]]
            click.echo(
                f"tower report on the topic: {cli:.1f} s ({_cpu() - cpu_before:.1f} CPU s, "
                f"load average {os.getloadavg()[0]:.1f}; same lifts: {same})"
            )
    finally:
        if broker is not None:
            broker.down()

    now = int(time.time() * 1000)
    grow(store, scale_to, now)
    rows = store.counts()["audit"]
    click.echo(f"grown to {rows:,} audit rows: {store.size_bytes() / rows:.0f} bytes per record")
    pages(store, settings, requests)
    shutil.rmtree(work, ignore_errors=True)


def pages(store: Store, settings: Settings, requests: int) -> None:
    """Every page and JSON answer through the console's HTTP server: p50/p95, computed
    afresh and as served."""
    rows = store.counts()["audit"]
    customer = store.query("SELECT customer_id FROM audit LIMIT 1")[0][0]
    # the report's background refresh would compete with the requests timed here: it runs
    # once at start (its time is measured above), and /report is timed as served
    app = console_app.build_app(
        store, WebSecurity(), TopicPolicyActions(settings), report_every_s=86_400.0
    )
    port = free_port()
    loop, runner = serve(app, port)
    base = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=5).read()
            break
        except OSError:
            time.sleep(0.1)
    started = time.perf_counter()
    while not app[console_app.FEED].ready:  # the experience metrics' first catch-up
        time.sleep(1.0)
    click.echo(
        f"experience metrics ready after {time.perf_counter() - started:.0f} s "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    while True:  # the first report, computed in the background at start
        with urllib.request.urlopen(base + "/api/console/v1/report", timeout=120) as r:
            if b'"computing"' not in r.read():
                break
        time.sleep(1.0)
    for cold in (True, False):
        click.echo(f"\n{'computed afresh' if cold else 'as served (cached)'} at {rows:,} rows:")
        for path, p in time_pages(base, customer, requests, cold, app).items():
            click.echo(f"  {path:<44} p50 {p['p50']:7.1f} ms  p95 {p['p95']:7.1f} ms")
        click.echo(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    store.close()


if __name__ == "__main__":
    main()
