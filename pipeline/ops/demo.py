"""`tower demo`: local Kafka, topics, a worker, simulated agents for ~30 s, and a summary.

Everything the demo starts it also stops, at the end or on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import click
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.contracts.codec import decode_record
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.kafka.topics import admin_client, create_topics, delete_topics
from pipeline.ops.local_kafka import LocalKafka, LocalKafkaError
from pipeline.ops.simulator import MALFORMED, AgentSimulator
from pipeline.settings import Settings, TopicNames

DEMO_APP_ID = "journey-tower-demo"
#: The demo works on its own topics, so it never touches a real deployment's data.
DEMO_TOPICS = TopicNames(**{f: f"demo-{v}" for f, v in TopicNames().__dict__.items()})


def _reset_demo_topics(settings: Settings) -> None:
    """A fresh demo every time: drop the demo's topics and its changelog."""
    delete_topics(settings)
    admin = admin_client(settings.bootstrap)
    internal = [t for t in admin.list_topics(timeout=10).topics if t.startswith(DEMO_APP_ID)]
    if internal:
        for fut in admin.delete_topics(internal, operation_timeout=30).values():
            fut.result()
    time.sleep(1.0)  # deletion is asynchronous in the controller


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        TOWER_BOOTSTRAP=settings.bootstrap,
        TOWER_APP_ID=settings.app_id,
        TOWER_DATA_DIR=str(settings.data_dir),
        TOWER_WEB_PORT=str(settings.web_port),
        TOWER_PARTITIONS=str(settings.partitions),
        **{f"TOWER_TOPIC_{k.upper()}": v for k, v in settings.topics.__dict__.items()},
    )
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.ops.cli", "worker", "--loglevel", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise click.ClickException(f"the worker exited early; its log ends with:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise click.ClickException(f"the worker did not answer on {url} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _read_outputs(settings: Settings, expected: int, timeout: float) -> dict[str, list[dict]]:
    """Read the demo's outputs until every input is accounted for (or time runs out)."""
    t = settings.topics
    roles = {t.approved: "approved_action", t.audit: "audit_record", t.deadletter: "dead_letter"}
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": f"demo-summary-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [TopicPartition(topic, p) for topic in roles for p in range(settings.partitions)]
    )
    seen: dict[str, list[dict]] = {name: [] for name in roles.values()}
    deadline = time.monotonic() + timeout
    with click.progressbar(length=expected, label="waiting for decisions  ") as bar:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                name = roles[msg.topic()]
                seen[name].append(decode_record(name, msg.value()))
                if name != "approved_action":
                    bar.update(1)
            if len(seen["audit_record"]) + len(seen["dead_letter"]) >= expected:
                break
    consumer.close()
    return seen


def _summary(seen: dict[str, list[dict]], produced: int, settings: Settings) -> None:
    audits, dead, approved = seen["audit_record"], seen["dead_letter"], seen["approved_action"]
    outcomes = Counter(a["outcome"] for a in audits)
    by_rule = Counter(a["rule"] for a in audits if a["outcome"] == "suppressed")
    reasons = Counter(d["reason"] for d in dead)
    agents = Counter(agent for a in approved for agent in a["agents"])
    echo = click.echo
    echo()
    echo(click.style("Journey Tower demo — summary", bold=True))
    echo(f"  events in            {produced:>7}")
    echo(f"  decided (audited)    {len(audits):>7}")
    echo(f"  approved actions     {len(approved):>7}")
    for outcome in ("merged", "suppressed", "duplicate", "recorded"):
        echo(f"  {outcome:<20} {outcomes.get(outcome, 0):>7}")
    for rule, n in by_rule.most_common():
        echo(f"    suppressed by {rule:<15}{n:>5}")
    echo(
        f"  dead letters         {len(dead):>7}  "
        + ", ".join(f"{r}={n}" for r, n in sorted(reasons.items()))
    )
    echo("  approved per agent   " + ", ".join(f"{a}={n}" for a, n in agents.most_common()))
    reconciled = len(audits) + len(dead) == produced
    echo(f"  reconciles           {'yes' if reconciled else 'NO'} (in = audited + dead-lettered)")
    if approved:
        sample = approved[0]
        echo(
            f"\n  e.g. approved {sample['action_id']}: {sample['action']} via {sample['channel']} "
            f"to {sample['customer_id']}, sources {sample['source_event_ids']}"
        )
    merged = next((a for a in audits if a["outcome"] == "merged"), None)
    if merged:
        echo(f"  e.g. merged {merged['event_id']} from {merged['agent']}: {merged['reason']}")
    t = settings.topics
    echo("\nWhere to look:")
    echo(f"  topics     {t.approved}, {t.audit}, {t.deadletter} on {settings.bootstrap}")
    echo(
        f"  metrics    http://{settings.web_host}:{settings.web_port}/metrics (while a worker runs)"
    )
    echo("  worker     tower worker   (keeps running; the demo's worker stopped with the demo)")


@click.command()
@click.option("--seconds", default=30.0, show_default=True, help="How long the agents produce.")
@click.option("--rate", default=150, show_default=True, help="Records per second from agents.")
@click.option("--customers", default=300, show_default=True, help="Simulated customers.")
@click.option("--malformed", default=12, show_default=True, help="Malformed records to mix in.")
@click.option("--keep-kafka", is_flag=True, help="Leave the broker running after the demo.")
def demo_command(
    seconds: float, rate: int, customers: int, malformed: int, keep_kafka: bool
) -> None:
    """Run the whole tower locally with simulated marketing, sales and service bots.

    Starts a local Kafka broker (fetching its jars once), recreates the demo topics, starts a
    worker, lets the bots react to the same customer triggers for --seconds (some customers
    withdraw consent, some records are replays or malformed), then prints what the tower did.
    """
    base = Settings.from_env()
    with ExitStack() as stack:
        broker = LocalKafka.from_settings(base, out=sys.stdout)
        already = broker.status().running
        try:
            broker.up()
        except LocalKafkaError as exc:
            raise click.ClickException(str(exc)) from exc
        if not already and not keep_kafka:
            stack.callback(broker.down)
        settings = Settings.from_env(
            app_id=DEMO_APP_ID,
            data_dir=Path("var/demo"),
            bootstrap=broker.bootstrap,
            topics=DEMO_TOPICS,
        )
        click.echo("Preparing fresh demo topics ...")
        _reset_demo_topics(settings)
        for line in create_topics(settings).lines():
            click.echo(f"  {line}")
        shutil.rmtree(settings.data_dir, ignore_errors=True)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.data_dir.parent / "demo-worker.log"
        proc = _start_worker(settings, log_path)
        stack.callback(_stop, proc)
        click.echo(f"Worker starting (log: {log_path}) ...")
        _wait_http(f"http://{settings.web_host}:{settings.web_port}/healthz", proc, log_path, 60)

        sim = AgentSimulator(customers=customers, seed=int(time.time()))
        producer = Producer(
            {"bootstrap.servers": settings.bootstrap, "linger.ms": 5, **JAVA_PARTITIONER}
        )
        produced = 0
        total = int(seconds * rate)
        bad_every = max(1, total // max(1, malformed)) if malformed else 0
        records = list(sim.opening())
        started = time.monotonic()
        with click.progressbar(length=total, label="agents proposing       ") as bar:
            while produced < total:
                if not records:
                    records = sim.step()
                rec = records.pop(0)
                value = rec.value
                if bad_every and produced % bad_every == bad_every - 1:
                    value = MALFORMED[(produced // bad_every) % len(MALFORMED)]
                producer.produce(settings.topics.events, key=rec.key, value=value)
                producer.poll(0)
                produced += 1
                bar.update(1)
                ahead = produced / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(30)
        seen = _read_outputs(settings, produced, timeout=90)
        _summary(seen, produced, settings)
