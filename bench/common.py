"""Shared plumbing of the benchmarks: broker, topics, producing, watching, lag, processes.

Kept in one place so every contender is fed and observed by exactly the same code.
"""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.kafka import clients, reader
from pipeline.kafka.topics import create_topics
from pipeline.ops.local_kafka import LocalKafka
from pipeline.settings import Settings, TopicNames

REPO = Path(__file__).resolve().parents[1]
#: Every rule switched on (the same policy as `bench.core_speed.FULL_POLICY`).
FULL_POLICY_FILE = REPO / "bench" / "policy.full.yaml"


#: the secured broker in use (`secured`): the harness's own clients connect to it as its
#: admin, and each Tower worker as the `tower` role, granted on the worker's topics
_SECURE: LocalKafka | None = None


@contextlib.contextmanager
def secured(broker: LocalKafka) -> Iterator[None]:
    """Within: every client of the harness and every Tower worker started on `broker`'s
    bootstrap uses its SASL_SSL settings."""
    global _SECURE
    _SECURE = broker
    try:
        yield
    finally:
        _SECURE = None


def _secure_for(bootstrap: str) -> LocalKafka | None:
    return _SECURE if _SECURE is not None and _SECURE.bootstrap == bootstrap else None


def harness_settings(bootstrap: str, base: Settings | None = None) -> Settings:
    """Settings of the harness's own clients for `bootstrap` (the admin's on a secured one)."""
    broker = _secure_for(bootstrap)
    if broker is None:
        return replace(base or Settings(), bootstrap=bootstrap)
    return broker.material.settings(bootstrap, "admin", base)


def conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """librdkafka settings of a harness client: the connection, then `extra`."""
    return {**clients.connection(harness_settings(bootstrap)), **extra}


def start_broker(bootstrap: str | None, port: int, run_dir: Path) -> tuple[str, LocalKafka | None]:
    """Use `bootstrap` if given, else start a private local broker (stopped by the caller)."""
    if bootstrap:
        return bootstrap, None
    broker = LocalKafka(port=port, controller_port=port + 1, run_dir=run_dir, out=sys.stderr)
    broker.up()
    return broker.bootstrap, broker


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a live process has used (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """(first offset, end offset) of each partition of `topic`, asked of the broker."""
    consumer = Consumer(conf(bootstrap, **{"group.id": f"bench-{uuid.uuid4()}"}))
    try:
        return {p: reader.watermarks(consumer, topic, p, 10.0) for p in range(partitions)}
    finally:
        consumer.close()


def create_plain_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = clients.admin(harness_settings(bootstrap))
    for fut in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        fut.result()


def produce_all(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    headers: Sequence[list[tuple[str, bytes]]] | None = None,
) -> None:
    """Load a backlog as fast as the client goes (not measured); `headers`: one list per
    record."""
    producer = Producer(
        {
            **conf(bootstrap),
            "linger.ms": 20,
            "batch.size": 1_000_000,
            # a retry right after topic creation must not reorder a customer's records, or
            # the contenders would decide different inputs
            "acks": "all",
            "enable.idempotence": True,
            **JAVA_PARTITIONER,
        }
    )
    for i, (key, value) in enumerate(records):
        while True:
            try:
                if headers is None:
                    producer.produce(topic, key=key, value=value)
                else:
                    producer.produce(topic, key=key, value=value, headers=headers[i])
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def produce_paced(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], rate: float
) -> float:
    """Produce record i at start + i/rate (a fixed rate, not as fast as it goes); returns
    the seconds it took, flush included."""
    producer = Producer(conf(bootstrap, **{"linger.ms": 5}, **JAVA_PARTITIONER))
    start = time.time()
    for i, (key, value) in enumerate(records):
        delay = start + i / rate - time.time()
        if delay > 0.001:
            time.sleep(delay)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(30)
    return time.time() - start


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and max; empty for no values."""
    if not values:
        return {}
    s = sorted(values)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": s[-1]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_process(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=open(log, "wb"),  # owned by the child for its lifetime
        stderr=subprocess.STDOUT,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --- options every benchmark command shares ------------------------------------------------

results_option = click.option(
    "--results", type=click.Path(path_type=Path, dir_okay=False), help="Also write JSON here."
)
bootstrap_option = click.option(
    "--bootstrap", envvar="TOWER_BOOTSTRAP", help="Use this broker instead of starting one."
)


def kafka_port_option(default: int) -> Callable[[Any], Any]:
    return click.option(
        "--kafka-port",
        default=default,
        show_default=True,
        help="Port of the private broker started when no --bootstrap is given (controller: +1).",
    )


# --- the Tower worker ----------------------------------------------------------------------


def tower_settings(bootstrap: str, tag: str, partitions: int, data_dir: Path) -> Settings:
    """Settings with private topic names, so runs never see each other's records."""
    names = TopicNames(**{f: f"bench-{tag}-{v}" for f, v in TopicNames().__dict__.items()})
    base = Settings(
        app_id=f"bench-tower-{tag}", partitions=partitions, data_dir=data_dir, topics=names
    )
    return harness_settings(bootstrap, base)


def tower_env(
    settings: Settings, web_port: int, policy_file: Path | None, **changes: Any
) -> dict[str, str]:
    """The worker's environment: `settings` with `changes` (e.g. runtime), as the `tower`
    role on a secured broker."""
    worker = replace(
        settings, web_port=web_port, policy_file=policy_file, instance_id="", **changes
    )
    broker = _secure_for(settings.bootstrap)
    if broker is not None:  # the worker connects as the `tower` role, as in production
        broker.grant_roles(settings.topics, settings.app_id)
        worker = broker.material.settings(settings.bootstrap, "tower", worker)
    return worker.to_env()


def start_tower(
    settings: Settings,
    policy_file: Path | None,
    log: Path,
    loglevel: str = "warning",
    **changes: Any,
) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m pipeline.ops.cli worker` exactly as an operator runs it; returns (proc, port).

    `changes` change the worker's settings (e.g. runtime)."""
    create_topics(settings).raise_for_problems()
    port = free_port()
    proc = run_process(
        [sys.executable, "-m", "pipeline.ops.cli", "worker", "--loglevel", loglevel],
        tower_env(settings, port, policy_file, **changes),
        log,
    )
    return proc, port


def broker_log_bytes(data_dir: Path) -> dict[str, int]:
    """Bytes in each topic's log segments on a local broker's disk (what producers wrote,
    after their compression; nothing compacted or deleted yet in a short run)."""
    sizes: collections.Counter[str] = collections.Counter()
    for part in data_dir.iterdir() if data_dir.is_dir() else ():
        topic, sep, index = part.name.rpartition("-")
        if not sep or not index.isdigit():
            continue
        sizes[topic] += sum(f.stat().st_size for f in part.glob("*.log"))
    return dict(sizes)


# --- observing -----------------------------------------------------------------------------


@dataclass
class Watched:
    """What arrived on an output topic: count, first/last record timestamps, per-second counts."""

    records: int = 0
    first: float | None = None
    last: float | None = None
    per_second: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def span(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last else 0.0


def watch(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int,
    timeout: float,
    label: str,
    t0: float,
    on_first: Callable[[], object] | None = None,
    check: Callable[[], object] | None = None,
) -> Watched:
    """Count records on `topic` until `expected`, with a progress bar.

    Times are the output records' own timestamps (set by the contender's producer), so the
    watcher's speed does not enter the figure; `per_second` is keyed by seconds after t0.
    `on_first` runs when the first record arrives (to profile processing, not start-up);
    `check` runs between polls and may raise to stop watching (a contender that died).
    """
    consumer = Consumer(
        {
            **conf(bootstrap),
            "group.id": f"bench-watch-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    w = Watched()
    deadline = time.monotonic() + timeout
    with click.progressbar(length=expected, label=f"{label:<22}", show_pos=True) as bar:
        while w.records < expected and time.monotonic() < deadline:
            if check is not None:
                check()
            msgs = consumer.consume(5000, 0.5)
            if msgs and on_first is not None and w.first is None:
                on_first()
            for msg in msgs:
                if msg.error():
                    continue
                ts = msg.timestamp()[1] / 1000
                w.first = ts if w.first is None else min(w.first, ts)
                w.last = ts if w.last is None else max(w.last, ts)
                w.per_second[int(ts - t0)] += 1
                w.records += 1
            bar.update(len(msgs))
    consumer.close()
    return w


class LagSampler(threading.Thread):
    """Every `interval` s: end offsets of the input topic minus the group's committed offsets.

    Committed offsets (not positions) are what an operator's lag monitor sees, so the series
    shows commit cadence too; samples are (seconds after t0, lag, committed total).
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        partitions: int,
        t0: float,
        interval: float = 1.0,
    ) -> None:
        super().__init__(daemon=True, name=f"lag-{group}")
        self.consumer = Consumer(
            conf(bootstrap, **{"group.id": group, "enable.auto.commit": False})
        )
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.t0 = t0
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):  # a transient broker error: skip the sample
                self.samples.append((time.time() - self.t0, *self.sample()))
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))
        self.consumer.close()

    def sample(self) -> tuple[int, int]:
        """(records behind the committed offsets, records committed) summed over partitions."""
        committed = self.consumer.committed(self.tps, timeout=5)
        lag = done = 0
        for tp in committed:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=5, cached=False
            )
            pos = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - pos)
            done += max(0, pos - low)
        return lag, done

    def stop(self) -> list[tuple[float, int, int]]:
        self._stop_event.set()
        self.join(10)
        return self.samples


def wait_committed(
    bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 60.0
) -> float | None:
    """Seconds until `group` has committed `topic` to its log end, or None at `timeout`.

    A worker whose outputs are all visible may still be writing what follows them (its
    state, its input positions); the group's offsets reach the end only after that."""
    sampler = LagSampler(bootstrap, group, topic, partitions, time.time())
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):  # a transient broker error: ask again
                if sampler.sample()[0] == 0:
                    return time.monotonic() - started
            time.sleep(0.1)
        return None
    finally:
        sampler.consumer.close()


# --- profiling -----------------------------------------------------------------------------


def py_spy() -> str | None:
    """py-spy next to this interpreter or on PATH; it is optional."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start_profile(pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        click.echo("py-spy not installed: no profile (pip install py-spy)", err=True)
        return None
    args = ["record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--nonblocking"]
    return subprocess.Popen(
        [exe, *args, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=open(out.with_suffix(".log"), "wb"),
    )


def stop_profile(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _samples(folded: Path) -> Iterator[tuple[str, int]]:
    """(stack, samples) per line of py-spy's collapsed stacks; nothing if there is no file."""
    for line in folded.read_text().splitlines() if folded.exists() else ():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack, int(count)


def summarise_profile(folded: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy's collapsed stacks, busiest first by self."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, n in _samples(folded):
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return []
    return [(f, 100 * n / total, 100 * incl[f] / total) for f, n in own.most_common(top)]


def inclusive_share(folded: Path, needles: Sequence[str]) -> dict[str, float]:
    """Share of samples whose stack contains each needle (a substring of a frame)."""
    hits: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, n in _samples(folded):
        total += n
        for needle in needles:
            if needle in stack:
                hits[needle] += n
    return {needle: 100 * hits[needle] / total for needle in needles} if total else {}


def stage_shares(folded: Path, root: str, stages: Mapping[str, str]) -> dict[str, float]:
    """Share of the samples under the frame `root` spent in each stage, a stage being the
    first of `stages`' needles (substrings of a frame) met going down from `root`; the
    rest is `root`'s own and unlisted work ("other")."""
    hits: collections.Counter[str] = collections.Counter()
    for stack, n in _samples(folded):
        frames = stack.split(";")
        top = next((i for i, f in enumerate(frames) if f.startswith(root)), None)
        if top is None:
            continue
        stage = next(
            (name for f in frames[top + 1 :] for name, needle in stages.items() if needle in f),
            "other",
        )
        hits[stage] += n
    total = sum(hits.values())
    return {name: 100 * hits[name] / total for name in [*stages, "other"]} if total else {}


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`: lines split one function apart."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if path else name


# --- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on, for docs/performance.md."""
    import confluent_kafka
    import faust

    mem_kb = 0
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kafka": Settings().kafka_version,
        "confluent_kafka": _first(confluent_kafka.version()),
        "librdkafka": _first(confluent_kafka.libversion()),
        "faust": faust.__version__,
        "os": platform.platform(),
    }


def _first(version: Any) -> str:
    """confluent-kafka returns (text, int) from some version calls and text from others."""
    return str(version[0] if isinstance(version, tuple) else version)
