"""Sustained throughput: the Tower worker against a naive Faust pass-through, same broker,
same pre-encoded data, one invocation.

Each contender starts with the whole input already in its topic (a backlog), so the figure
is what one process sustains: records / (last output time - first output time), read from
the output records' timestamps.

    python -m bench.throughput --events 60000
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.ops.local_kafka import LocalKafka
from pipeline.ops.simulator import AgentSimulator
from pipeline.ops.topics import admin_client, create_topics
from pipeline.settings import Settings, TopicNames

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    name: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def _watch(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float, label: str
) -> tuple[int, float]:
    """Count records on `topic` until `expected`; return count and first→last span (s)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    first = last = None
    n = 0
    deadline = time.monotonic() + timeout
    with click.progressbar(length=expected, label=f"{label:<28}") as bar:
        while n < expected and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.5):
                if msg.error():
                    continue
                ts = msg.timestamp()[1] / 1000
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
                n += 1
                bar.update(1)
    consumer.close()
    return n, (last - first) if first is not None and last is not None else 0.0


def _run_process(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@click.command()
@click.option("--events", default=60_000, show_default=True, help="Input records per contender.")
@click.option("--customers", default=5_000, show_default=True)
@click.option("--partitions", default=8, show_default=True)
@click.option(
    "--bootstrap", envvar="TOWER_BOOTSTRAP", help="Use this broker instead of a local one."
)
def main(events: int, customers: int, partitions: int, bootstrap: str | None) -> None:
    """Measure events/s of the Tower worker and of a Faust pass-through, and their ratio."""
    if not bootstrap:
        broker = LocalKafka.from_settings(Settings.from_env(), out=sys.stderr)
        broker.up()
        bootstrap = broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="tower-bench-"))
    click.echo(f"Generating {events} records for {customers} customers ...")
    sim = AgentSimulator(customers=customers, seed=3)
    records = [(r.key, r.value) for r in sim.records(events)]

    # 1. naive Faust pass-through
    src, sink = f"bench-{tag}-in", f"bench-{tag}-out"
    admin = admin_client(bootstrap)
    from confluent_kafka.admin import NewTopic

    for fut in admin.create_topics(
        [NewTopic(src, partitions, 1), NewTopic(sink, partitions, 1)]
    ).values():
        fut.result()
    _produce(bootstrap, src, records)
    proc = _run_process(
        [sys.executable, "-m", "bench.faust_passthrough"],
        {
            "BENCH_APP_ID": f"bench-faust-{tag}",
            "BENCH_BOOTSTRAP": bootstrap,
            "BENCH_SOURCE": src,
            "BENCH_SINK": sink,
            "BENCH_DATA_DIR": str(work / "faust"),
        },
        work / "faust.log",
    )
    n, span = _watch(bootstrap, sink, partitions, len(records), 600, "faust pass-through")
    _stop(proc)
    faust_result = Result("faust pass-through (consume + topic.send)", n, span)

    # 2. Tower worker, full current rule set
    names = TopicNames(**{f: f"bench-{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    settings = Settings(
        bootstrap=bootstrap,
        app_id=f"bench-tower-{tag}",
        partitions=partitions,
        data_dir=work / "tower",
        topics=names,
    )
    create_topics(settings).raise_for_problems()
    _produce(bootstrap, names.events, records)
    env = {
        "TOWER_BOOTSTRAP": bootstrap,
        "TOWER_APP_ID": settings.app_id,
        "TOWER_DATA_DIR": str(settings.data_dir),
        "TOWER_PARTITIONS": str(partitions),
        "TOWER_WEB_PORT": str(_free_port()),
    }
    env.update({f"TOWER_TOPIC_{k.upper()}": v for k, v in names.__dict__.items()})
    proc = _run_process(
        [sys.executable, "-m", "pipeline.ops.cli", "worker", "--loglevel", "warning"],
        env,
        work / "tower.log",
    )
    n, span = _watch(bootstrap, names.audit, partitions, len(records), 600, "tower worker (audit)")
    _stop(proc)
    tower_result = Result("tower worker (decode, decide, state, audit + actions)", n, span)

    click.echo()
    click.echo(f"{'contender':<58}{'records':>9}{'seconds':>9}{'events/s':>10}")
    for r in (faust_result, tower_result):
        click.echo(f"{r.name:<58}{r.records:>9}{r.seconds:>9.2f}{r.rate:>10.0f}")
    if faust_result.rate:
        click.echo(f"ratio tower / faust pass-through: {tower_result.rate / faust_result.rate:.2f}")
    click.echo(f"logs in {work}")


if __name__ == "__main__":
    main()
