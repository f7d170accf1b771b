"""Sustained throughput of the Tower worker against its ceiling and a naive Faust agent, and
(with --latency) its end-to-end latency at a fixed rate. One invocation, one broker, the
same pre-encoded records for every contender.

Contenders, each a subprocess started on a backlog already in its own input topic:

  raw    plain confluent-kafka loop: consume, decode_event, encode_record, produce (ceiling)
  faust  naive Faust agent re-sending every record (what Faust gives without thought)
  tower  `python -m pipeline.ops.cli worker` with every rule on (bench/policy.full.yaml)
  native the same worker on the transactional runtime (confluent-kafka, exactly-once)
  native-subset  that worker on bench/policy.subset.yaml: the Quix peer's rules only
  quix-eos / quix-eos-5s / quix-alo  the peer: that rule subset built with Quix Streams
         (bench/quix_app.py, run with .venv-quix's python), exactly-once committing every
         0.1 s / exactly-once at Quix's default commit interval (5 s) / at-least-once
         at Quix's defaults (commit every 5 s)

After each run the contender's audit records are read back and their outcomes counted:
contenders of the same rule set must decide the same inputs the same way (a MISMATCH line
says they did not).

The figure is records / (last output timestamp - first output timestamp): what one process
sustains once running, start-up excluded. Consumer lag is sampled every second.

    python -m bench.throughput --events 60000 --latency --seconds 20 --plots-dir docs
"""

from __future__ import annotations

import collections
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import plots
from bench.common import (
    FULL_POLICY_FILE,
    REPO,
    LagSampler,
    bootstrap_option,
    broker_log_bytes,
    conf,
    cpu_seconds,
    create_plain_topics,
    free_port,
    harness_settings,
    inclusive_share,
    kafka_port_option,
    machine,
    percentiles,
    produce_all,
    results_option,
    run_process,
    start_broker,
    start_profile,
    start_tower,
    stop_process,
    stop_profile,
    summarise_profile,
    tower_env,
    tower_settings,
    wait_committed,
    watch,
)
from pipeline.contracts import schemas
from pipeline.contracts.codec import decode_event, decode_record, encode_event, registry_header
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.kafka.reader import scan_topic
from pipeline.kafka.schema_registry import lookup_for
from pipeline.kafka.topics import create_topics
from pipeline.ops.simulator import AgentSimulator
from pipeline.runtime.transactional.polling import take_available
from pipeline.settings import Settings

#: Contender ids: "native" names the transactional runtime by its earlier name. The ids stay
#: as they are because stored results (`--results`) and docs/performance.md name them, and a
#: run is compared with earlier ones by id.
CONTENDERS = (
    "raw",
    "faust",
    "tower",
    "native",
    "native-x2",
    "tower-xp",
    "native-xp",
    "native-subset",
    "quix-eos",
    "quix-eos-5s",
    "quix-alo",
)
#: The full rule set plus the experiments issue's control group and holdouts.
EXPERIMENTS_POLICY_FILE = Path(__file__).with_name("policy.experiments.yaml")
#: Only the rules the Quix Streams peer has (bench/quix_rules.py), as far as a policy allows.
SUBSET_POLICY_FILE = Path(__file__).with_name("policy.subset.yaml")
#: The Quix Streams peer's interpreter: its own venv, since quixstreams pins an older
#: confluent-kafka than Tower's (`make bench-quix-deps`).
QUIX_PYTHON = REPO / ".venv-quix" / "bin" / "python"
LABELS = {
    "raw": "raw confluent-kafka loop (decode + encode)",
    "faust": "naive Faust pass-through agent",
    "tower": "Tower worker, full rule set",
    "native": "Tower worker, transactional runtime (EOS)",
    "native-x2": "two transactional Tower workers, one group",
    "tower-xp": "Tower worker, full rule set + experiments",
    "native-xp": "Tower worker, transactional runtime (EOS) + experiments",
    "native-subset": "Tower worker, transactional runtime (EOS), Quix subset",
    "quix-eos": "Quix Streams, subset, exactly-once, 0.1 s",
    "quix-eos-5s": "Quix Streams, subset, exactly-once, 5 s",
    "quix-alo": "Quix Streams, subset, at-least-once, 5 s",
}
#: Contenders that run the Tower worker: their outputs are audit records and actions.
TOWERS = frozenset({"tower", "native", "native-x2", "tower-xp", "native-xp", "native-subset"})
#: Settings changes per Tower contender: (runtime, policy file or None for the run's).
TOWER_CHANGES: dict[str, tuple[str, Path | None]] = {
    "native": ("transactional", None),
    "native-x2": ("transactional", None),
    "tower-xp": ("faust", EXPERIMENTS_POLICY_FILE),
    "native-xp": ("transactional", EXPERIMENTS_POLICY_FILE),
    "native-subset": ("transactional", SUBSET_POLICY_FILE),
}
#: The Quix Streams contenders (bench/quix_app.py): their outputs are JSON audit records and
#: actions. Exactly-once commits every 0.1 s, what Tower's transactional runtime does under a
#: backlog (one transaction per polled batch of up to 500 records, i.e. every 50-100 ms at
#: 5,000-10,000 events/s); quix-eos-5s and at-least-once keep Quix's default commit
#: interval (5 s, whatever the guarantee).
QUIX = {
    "quix-eos": {"BENCH_GUARANTEE": "exactly-once", "BENCH_COMMIT_INTERVAL": "0.1"},
    "quix-eos-5s": {"BENCH_GUARANTEE": "exactly-once"},
    "quix-alo": {"BENCH_GUARANTEE": "at-least-once"},
}
#: Contenders with audit records and actions (the others pass records through).
DECIDERS = TOWERS | QUIX.keys()
#: Contenders deciding with the same rules: their outcome counts must be identical.
RULE_SETS = (
    ("full rule set", ("tower", "native", "native-x2")),
    ("full rule set + experiments", ("tower-xp", "native-xp")),
    ("Quix subset", ("native-subset", "quix-eos", "quix-eos-5s", "quix-alo")),
)
#: Worker processes per contender (one unless listed): they share the partitions.
WORKERS = {"native-x2": 2}
#: Frames worth a line in the profile summary: where a batch's time goes, inclusive.
PROFILE_MARKERS = (
    "decode_event",
    "decide (pipeline/core/arbitration.py",
    "encode_record",
    "audit_record",
    "from_bytes",
    "to_bytes",
    "FaustStateStore.load",
    "FaustStateStore.save",
    "send (faust/",
    "process (pipeline/processing/batch.py",
    "labels (prometheus_client",
    "take_events",
    "OverlayStore",
    "_produce (pipeline/runtime/transactional",
    "commit_transaction",
    "send_offsets_to_transaction",
    "consume (pipeline/runtime/transactional",
    "_polled",
)


@dataclass
class Result:
    name: str
    records: int
    seconds: float
    wall: float
    per_second: dict[int, int] = field(default_factory=dict)
    lag: list[tuple[float, int, int]] = field(default_factory=list)
    #: cores busy from the first to the last output: the contender's processes, the broker
    cores: dict[str, float] = field(default_factory=dict)
    #: Tower contenders on a local broker: bytes written per input record, by output
    bytes_per_event: dict[str, float] = field(default_factory=dict)
    #: deciding contenders: audit records per outcome, and per outcome/rule
    decisions: dict[str, int] = field(default_factory=dict)
    decisions_by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def cpu_us_per_event(self, who: str) -> float | None:
        """CPU µs per output record of the contender's processes or the broker: cores busy
        from the first to the last output x that span / records."""
        if who not in self.cores or not self.records:
            return None
        return self.cores[who] * self.seconds / self.records * 1e6


def _records(events: int, customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    """The simulator's mix: consent opening, proposals from 3 bots per trigger, signals,
    about 5% replayed duplicates; half Avro, half JSON."""
    return [
        (r.key, r.value) for r in AgentSimulator(customers=customers, seed=seed).records(events)
    ]


@dataclass
class _Setup:
    """One contender's topics and how to start it; `sink` carries one record per input."""

    source: str
    sink: str
    group: str
    start: Callable[[], list[subprocess.Popen[bytes]]]
    extra_sinks: tuple[str, ...] = ()
    web_port: int = 0
    worker_ports: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Wire:
    """How the inputs are written and the outputs read: the records' encoding
    (`--input-format`), trace headers on every input (`--trace`) and, for registry framing,
    the worker's registry settings and the lookup that decodes its framed audit."""

    input_format: str = "mixed"
    trace: bool = False
    #: the worker's settings changed for this wire (registry URL, output format)
    changes: dict[str, Any] = field(default_factory=dict)
    lookup: Callable[[str, int], Any] | None = None


PLAIN = Wire()


def _encoded(records: list[tuple[bytes, bytes]], fmt: str, schema_id: int | None) -> list[Any]:
    """The records all in one encoding: single-object Avro, or registry-framed Avro (the same
    Avro body behind the 5-byte registry header instead of the 10-byte single-object one)."""
    if fmt == "mixed":
        return records
    out = []
    for key, value in records:
        avro = encode_event(decode_event(key, value), "avro")
        out.append((key, avro if schema_id is None else registry_header(schema_id) + avro[10:]))
    return out


def _traceparents(n: int) -> list[list[tuple[str, bytes]]]:
    """A W3C traceparent header per input, each its own random trace and span id (as an
    agent's tracer makes them, so they compress as badly as real ones)."""
    rng = random.Random(7)
    return [
        [("traceparent", f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01".encode())]
        for _ in range(n)
    ]


def _stand_in_registry() -> tuple[Any, int]:
    """The tests' stand-in for a Confluent-API schema registry (tests/registry_standin.py),
    in this process, with the input schema registered; (registry, its id)."""
    from pipeline.kafka.schema_registry import RegistryClient
    from pipeline.settings import Settings
    from tests.registry_standin import StandInRegistry

    registry = StandInRegistry().start()
    client = RegistryClient(Settings(schema_registry_url=registry.url))
    schema_id = client.register(
        "bench-agent-events-value", json.dumps(schemas.get("agent_event").raw)
    )
    return registry, schema_id


def _setup(
    name: str,
    bootstrap: str,
    partitions: int,
    work: Path,
    tag: str,
    policy_file: Path,
    wire: Wire = PLAIN,
) -> _Setup:
    """Create the contender's topics; the returned `start` launches its process."""
    if name in TOWERS:
        settings = tower_settings(bootstrap, f"{tag}-{name}", partitions, work / f"{name}-{tag}")
        create_topics(settings).raise_for_problems()
        t = settings.topics

        def start_worker() -> list[subprocess.Popen[bytes]]:
            if name not in TOWER_CHANGES:
                proc, setup.web_port = start_tower(
                    settings, policy_file, work / f"tower-{tag}.log", **wire.changes
                )
                return [proc]
            procs = []
            for i in range(WORKERS.get(name, 1)):
                port = setup.worker_ports[i] if i < len(setup.worker_ports) else free_port()
                if i == len(setup.worker_ports):
                    setup.worker_ports.append(port)
                setup.web_port = setup.worker_ports[0]  # the first worker's metrics
                runtime, own_policy = TOWER_CHANGES[name]
                data_dir = settings.data_dir / f"worker-{i}"
                env = tower_env(
                    settings,
                    port,
                    own_policy or policy_file,
                    runtime=runtime,
                    data_dir=data_dir,
                    **wire.changes,
                )
                cmd = [sys.executable, "-m", "pipeline.ops.cli", "worker", "--loglevel", "info"]
                procs.append(run_process(cmd, env, work / f"{name}-{tag}-{i}.log"))
            return procs

        setup = _Setup(t.events, t.audit, settings.app_id, start_worker, (t.approved,))
        return setup
    source, sink, group = (
        f"bench-{tag}-{name}-in",
        f"bench-{tag}-{name}-out",
        f"bench-{tag}-{name}",
    )
    env = {
        "BENCH_APP_ID": group,
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_SOURCE": source,
        "BENCH_SINK": sink,
        "BENCH_DATA_DIR": str(work / f"{name}-{tag}"),
    }
    log = work / f"{name}-{tag}.log"
    if name in QUIX:
        actions = f"bench-{tag}-{name}-actions"
        create_plain_topics(bootstrap, [source, sink, actions], partitions)
        env.update(QUIX[name], BENCH_ACTIONS=actions)
        cmd = [str(QUIX_PYTHON), "-m", "bench.quix_app"]
        return _Setup(source, sink, group, lambda: [run_process(cmd, env, log)], (actions,))
    create_plain_topics(bootstrap, [source, sink], partitions)
    module = "bench.raw_loop" if name == "raw" else "bench.faust_passthrough"
    return _Setup(
        source, sink, group, lambda: [run_process([sys.executable, "-m", module], env, log)]
    )


def _run_contender(
    name: str,
    bootstrap: str,
    records: list[tuple[bytes, bytes]],
    partitions: int,
    work: Path,
    tag: str,
    policy_file: Path,
    timeout: float,
    profile: bool,
    broker_pid: int | None,
    broker_data: Path | None = None,
    wire: Wire = PLAIN,
) -> Result:
    """Load the backlog, start the contender, watch its output, sample its group's lag."""
    setup = _setup(name, bootstrap, partitions, work, f"{tag}-tp", policy_file, wire)
    source, sink, group, start = setup.source, setup.sink, setup.group, setup.start
    if WORKERS.get(name, 1) > 1:
        _settle_group(start, setup.worker_ports)
    headers = _traceparents(len(records)) if wire.trace else None
    produce_all(bootstrap, source, records, headers)
    expected = len(records)  # one audit / one pass-through record per input
    t0 = time.time()
    sampler = LagSampler(bootstrap, group, source, partitions, t0)
    sampler.start()
    procs = start()
    profiles: list[subprocess.Popen[bytes] | None] = []
    cpu: list[tuple[float, float, float | None]] = []  # (monotonic, contender, broker)

    def sample_cpu() -> None:
        used = sum(cpu_seconds(p.pid) or 0.0 for p in procs)
        cpu.append((time.monotonic(), used, cpu_seconds(broker_pid)))

    def on_first_output() -> None:
        sample_cpu()
        if profile and name in TOWERS:
            profiles.append(start_profile(procs[0].pid, work / f"{name}.folded"))

    def check_alive() -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise click.ClickException(
                    f"{LABELS[name]} exited (code {proc.returncode}) before writing all "
                    f"{expected:,} outputs; its log is in {work}"
                )

    try:
        w = watch(
            bootstrap,
            sink,
            partitions,
            expected,
            timeout,
            LABELS[name],
            t0,
            on_first_output,
            check_alive,
        )
        sample_cpu()
        time.sleep(2.5)  # one more commit interval, so the lag series ends at zero
    finally:
        for prof in profiles:
            stop_profile(prof)
        for proc in procs:
            stop_process(proc)
        lag = sampler.stop()
    wall = (w.last - t0) if w.last else 0.0
    cores = {}
    if len(cpu) == 2 and cpu[1][0] > cpu[0][0]:
        (t1, c1, b1), (t2, c2, b2) = cpu
        cores["contender"] = (c2 - c1) / (t2 - t1)
        if b1 is not None and b2 is not None:
            cores["broker"] = (b2 - b1) / (t2 - t1)
    written = {}
    if name in DECIDERS and broker_data is not None:
        written = _bytes_per_event(broker_log_bytes(broker_data), setup, len(records))
    result = Result(LABELS[name], w.records, w.span, wall, dict(w.per_second), lag, cores, written)
    if name in DECIDERS:
        result.decisions, result.decisions_by_rule = _decisions(name, bootstrap, sink, wire.lookup)
    return result


def _decisions(
    name: str, bootstrap: str, audit: str, lookup: Callable[[str, int], Any] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Audit records per outcome and per outcome/rule: the whole audit topic, read back
    (committed records only) after the contender stopped. Policy changes are left out."""
    outcomes: collections.Counter[str] = collections.Counter()
    by_rule: collections.Counter[str] = collections.Counter()
    for rec in scan_topic(harness_settings(bootstrap), audit, timeout_s=120):
        value = rec.value or b""
        record = (
            decode_record("audit_record", value, lookup) if name in TOWERS else orjson.loads(value)
        )
        if record.get("kind") == "policy":
            continue
        outcomes[record["outcome"]] += 1
        by_rule[f"{record['outcome']}/{record.get('rule') or '-'}"] += 1
    return dict(sorted(outcomes.items())), dict(sorted(by_rule.items()))


def _bytes_per_event(sizes: dict[str, int], setup: _Setup, inputs: int) -> dict[str, float]:
    """What the worker wrote to the broker per input record: actions, audit, dead letters,
    wake-ups and the state changelog (its app id's topics), and their total."""
    kinds = {setup.sink: "audit", **{t: "approved" for t in setup.extra_sinks}}
    prefix = setup.source.removesuffix("agent-events")
    out: dict[str, float] = collections.Counter()
    for topic, size in sizes.items():
        if topic == setup.source:
            continue
        if topic in kinds:
            out[kinds[topic]] += size / inputs
        elif topic.startswith((setup.group, f"changelog__{setup.group}--")):  # Tower's, Quix's
            out["changelog"] += size / inputs
        elif topic.startswith(prefix) and topic != setup.source and not topic.endswith("policies"):
            out[topic.removeprefix(prefix)] += size / inputs
    out["total"] = sum(out.values())
    return dict(out)


def _settle_group(start: Callable[[], list[subprocess.Popen[bytes]]], ports: list[int]) -> None:
    """Start the workers on the empty topic until each owns partitions, then stop them.

    They are static group members (`group.instance.id`), so when they start again on the
    backlog they get the same partitions back at once: the measured run has no rebalance
    and no restore, like the single worker it is compared with."""
    import urllib.request

    procs = start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            owned = []
            for port in ports:
                try:
                    url = f"http://127.0.0.1:{port}/healthz"
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        owned.append(bool(json.loads(resp.read())["partitions"]))
                except (OSError, ValueError, KeyError):
                    owned.append(False)
            if all(owned):
                return
            time.sleep(0.5)
        raise click.ClickException("the workers did not share the partitions within 120 s")
    finally:
        for proc in procs:
            stop_process(proc)


# --- latency -------------------------------------------------------------------------------


@dataclass
class Latency:
    """Per contender: `approved_ms` per approved action (tower only), `audit_ms` per input to
    its audit record (tower) or its pass-through copy (raw, faust)."""

    rate: float
    produced: int
    seconds: float
    approved_ms: list[float]
    audit_ms: list[float]
    missing: int
    #: (seconds after the paced start, ms) per approved action: a rising line means backlog
    series: list[tuple[float, float]] = field(default_factory=list)
    #: the worker's own histogram: record timestamp -> start of deciding its batch (s, count)
    worker_lag: list[tuple[float, float]] = field(default_factory=list)
    #: transactional runtime: the worker's commit_transaction durations (s, count)
    worker_commit: list[tuple[float, float]] = field(default_factory=list)
    #: approved actions: from the worker's produce() (the record timestamp) to consumed
    visible_ms: list[float] = field(default_factory=list)
    #: seconds of paced load before the measured window, and its approved actions' latency
    settle_s: float = 0.0
    settling_ms: list[float] = field(default_factory=list)

    def percentiles(self, values: list[float]) -> dict[str, float]:
        return percentiles(values)


class _OutputReader(threading.Thread):
    """Consumes output topics as records appear; notes the wall clock per record."""

    def __init__(self, bootstrap: str, primary: str, others: list[str], partitions: int) -> None:
        super().__init__(daemon=True, name="latency-reader")
        self.consumer = Consumer(
            {
                **conf(bootstrap),
                "group.id": f"bench-lat-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        topics = [primary, *others]
        self.consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
        self.primary = primary
        #: (topic, wall clock seen, output's own timestamp in s, key, value)
        self.seen: list[tuple[str, float, float, bytes | None, bytes]] = []
        self.outputs = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            # not consume(1000, 0.05): it would hold every record until 1,000 arrived or
            # 50 ms passed, adding up to 50 ms to each latency measured
            for msg in take_available(self.consumer, 1000, 0.05):
                if msg.error():
                    continue
                stamp = msg.timestamp()[1] / 1000
                self.seen.append((msg.topic(), time.time(), stamp, msg.key(), msg.value()))
                if msg.topic() == self.primary:
                    self.outputs += 1
        self.consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def _latency(
    name: str,
    bootstrap: str,
    partitions: int,
    work: Path,
    tag: str,
    policy_file: Path,
    rate: float,
    seconds: float,
    customers: int,
    settle: float = 0.0,
) -> Latency:
    """Load the customers' consent opening as a warm-up, then produce at `rate` for
    `settle` + `seconds`, each record's timestamp set to its produce time. Approved actions
    are matched to inputs by `source_event_ids`, every input to its audit record (tower) or
    pass-through copy (raw, faust) by event id. Inputs produced in the first `settle` seconds
    are kept apart: they meet what the warm-up backlog left behind (a worker and a broker
    still busy with it), not the steady state the percentiles are about."""
    warmup = len(list(AgentSimulator(customers=customers, seed=11).opening()))
    total = warmup + int(rate * (settle + seconds))
    sim = AgentSimulator(customers=customers, seed=11).records(total)
    setup = _setup(name, bootstrap, partitions, work, f"{tag}-lat", policy_file)
    procs = setup.start()
    reader = _OutputReader(bootstrap, setup.sink, list(setup.extra_sinks), partitions)
    reader.start()
    producer = Producer(conf(bootstrap, **{"linger.ms": 5}, **JAVA_PARTITIONER))
    produced_at: dict[str, float] = {}
    output_due: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
    worker_lag: list[tuple[float, float]] = []
    worker_commit: list[tuple[float, float]] = []
    try:
        for r in sim[:warmup]:
            producer.produce(setup.source, key=r.key, value=r.value)
        producer.flush(30)
        deadline = time.monotonic() + 180
        with click.progressbar(length=warmup, label=f"{f'{name}: warm-up':<22}") as bar:
            while reader.outputs < warmup and time.monotonic() < deadline:
                bar.update(reader.outputs - bar.pos)
                time.sleep(0.2)
        settled = wait_committed(bootstrap, setup.group, setup.source, partitions)
        click.echo(
            f"{name}: warm-up committed {settled:.1f} s after its last output"
            if settled is not None
            else f"{name}: warm-up not committed after 60 s (measuring anyway)"
        )
        measured = sim[warmup:]
        # the harness keeps every record it sees: a full collection of that heap would stall
        # its reader thread and show up as tower latency
        gc.collect()
        gc.freeze()
        gc.disable()
        start = time.time()
        label = f"{f'{name} @ {rate:.0f}/s':<22}"
        with click.progressbar(length=len(measured), label=label) as bar:
            for i, r in enumerate(measured):
                delay = start + i / rate - time.time()
                if delay > 0.001:
                    time.sleep(delay)
                now_ms = int(time.time() * 1000)
                assert r.event is not None
                produced_at.setdefault(r.event.event_id, now_ms / 1000)
                output_due[r.event.event_id].append(now_ms / 1000)
                while True:
                    try:
                        producer.produce(setup.source, key=r.key, value=r.value, timestamp=now_ms)
                        break
                    except BufferError:
                        producer.poll(0.001)
                producer.poll(0)
                if i % 500 == 499:
                    bar.update(500)
        producer.flush(30)
        elapsed = time.time() - start - settle
        deadline = time.monotonic() + 60
        while reader.outputs < total and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        if setup.web_port:
            worker_lag = _scrape_histogram(setup.web_port, "tower_end_to_end_lag_seconds")
            worker_commit = _scrape_histogram(
                setup.web_port, "tower_transaction_seconds", 'step="commit"'
            )
    finally:
        gc.enable()
        reader.stop()
        for proc in procs:
            stop_process(proc)
    #: (seconds from the paced start to the input, ms from the input to its output)
    approved: list[tuple[float, float]] = []
    visible: list[tuple[float, float]] = []
    per_input: list[tuple[float, float]] = []
    for topic, seen_at, stamp, key, value in reader.seen:
        if topic != setup.sink:  # approved-actions
            if name in QUIX:
                ids = [orjson.loads(value)["source_event_id"]]
            else:
                ids = decode_record("approved_action", value)["source_event_ids"]
            times = [produced_at[i] for i in ids if i in produced_at]
            if times:  # the newest input the action depends on is the one that caused it
                caused = max(times)
                approved.append((caused - start, 1000 * (seen_at - caused)))
                visible.append((caused - start, 1000 * (seen_at - stamp)))
            continue
        if name in TOWERS:
            event_id = decode_record("audit_record", value)["event_id"]
        elif name in QUIX:
            event_id = orjson.loads(value)["event_id"]
        else:
            event_id = decode_event(key, value).event_id
        queue = output_due.get(event_id)
        if queue:
            due = queue.popleft()
            per_input.append((due - start, 1000 * (seen_at - due)))
    missing = sum(len(q) for q in output_due.values())
    settling_actions, approved_ms = split_at(approved, settle)
    settling_inputs, per_input_ms = split_at(per_input, settle)
    decider = name in DECIDERS
    return Latency(
        rate,
        len(sim) - warmup,
        elapsed,
        approved_ms,
        per_input_ms,
        missing,
        approved if decider else per_input,
        worker_lag,
        worker_commit,
        split_at(visible, settle)[1],
        settle,
        settling_actions if decider else settling_inputs,
    )


def split_at(
    samples: list[tuple[float, float]], steady_from: float
) -> tuple[list[float], list[float]]:
    """The latencies of (input time, latency) samples whose input came before `steady_from`
    (the settling seconds), and those of the rest (the measured window)."""
    settling = [ms for at, ms in samples if at < steady_from]
    return settling, [ms for at, ms in samples if at >= steady_from]


def _scrape_histogram(port: int, name: str, labels: str = "") -> list[tuple[float, float]]:
    """Cumulative buckets (le, count) of one histogram on the worker's /metrics page,
    of the series whose labels contain `labels` (e.g. 'step="commit"')."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and labels in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float(le), float(line.rsplit(" ", 1)[1])))
    return out


def _bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding quantile q (Prometheus-style, coarse)."""
    if not buckets or not buckets[-1][1]:
        return None
    target = q * buckets[-1][1]
    return next(le for le, n in buckets if n >= target)


def _drift(series: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Median latency of the first and the last quarter: equal when the rate is sustained."""
    if len(series) < 8:
        return None
    s = sorted(series)
    q = len(s) // 4
    return statistics.median(v for _, v in s[:q]), statistics.median(v for _, v in s[-q:])


# --- the command ---------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--events", default=60_000, show_default=True, help="Backlog records per contender.")
@click.option(
    "--customers", default=5_000, show_default=True, help="Distinct customers in the records."
)
@click.option("--partitions", default=8, show_default=True, help="Partitions of every topic.")
@click.option(
    "--contenders",
    default=",".join(CONTENDERS),
    show_default=True,
    help="Comma list of raw, faust, tower, native, native-x2 (two transactional workers), "
    "tower-xp, native-xp (experiments), native-subset (the Quix subset), quix-eos, quix-eos-5s, "
    "quix-alo (Quix Streams, needs `make bench-quix-deps`); empty for latency only.",
)
@click.option(
    "--latency/--no-latency",
    default=False,
    show_default=True,
    help="Also measure end-to-end latency at a fixed rate (see --latency-of).",
)
@click.option(
    "--latency-of",
    default="",
    help="Comma list of contenders whose latency --latency measures [default: the chosen "
    "ones, or native if none].",
)
@click.option(
    "--rate",
    type=float,
    help="Events/s for --latency [default: half of each contender's rate measured in this "
    "run, i.e. half its sustainable load].",
)
@click.option(
    "--seconds", default=20.0, show_default=True, help="Duration of --latency's measured window."
)
@click.option(
    "--settle",
    default=5.0,
    show_default=True,
    help="Seconds of paced load before --latency's measured window. Right after the warm-up "
    "backlog the worker and the broker are still busy with it; those seconds are printed "
    "apart ('settling'), not in the percentiles. 0 measures from the first paced record.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=FULL_POLICY_FILE,
    show_default=True,
    help="Policy of the Tower worker.",
)
@click.option(
    "--profile/--no-profile",
    default=False,
    help="Sample the Tower worker with py-spy during its run (adds a little overhead).",
)
@click.option(
    "--plots-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write throughput/lag and latency PNGs here [default: the run's temp dir].",
)
@click.option(
    "--input-format",
    type=click.Choice(["mixed", "avro", "registry-avro"]),
    default="mixed",
    show_default=True,
    help="The inputs' encoding: the simulator's mix (half JSON, half single-object Avro), all "
    "single-object Avro, or all registry-framed Avro; registry-avro also writes the outputs "
    "framed (TOWER_OUTPUT_FORMAT=registry-avro), against the tests' stand-in registry.",
)
@click.option(
    "--trace/--no-trace",
    default=False,
    show_default=True,
    help="Every input carries a W3C traceparent header (no OpenTelemetry SDK in the worker).",
)
@results_option
@bootstrap_option
@kafka_port_option(39492)
@click.option("--timeout", default=600.0, show_default=True, help="Give up on a contender after.")
def main(
    events: int,
    customers: int,
    partitions: int,
    contenders: str,
    latency: bool,
    latency_of: str,
    rate: float | None,
    seconds: float,
    settle: float,
    policy_file: Path,
    profile: bool,
    plots_dir: Path | None,
    results: Path | None,
    bootstrap: str | None,
    kafka_port: int,
    timeout: float,
    input_format: str,
    trace: bool,
) -> None:
    """Events/s of a raw confluent-kafka loop, a naive Faust agent and the Tower worker on
    the same backlog, the ratios tower/raw and tower/faust, and optionally the Tower's
    end-to-end latency (p50/p95/p99/max) at a fixed rate.

    Starts a private Kafka broker on --kafka-port (stopped at the end) unless --bootstrap is
    given. Logs, JSON results and (with matplotlib installed) plots land in a temp dir that
    is printed at the end.
    """
    chosen = [c.strip() for c in contenders.split(",") if c.strip()]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        raise click.BadParameter(f"unknown contender(s) {sorted(unknown)}", param_hint="contenders")
    measured = [c.strip() for c in latency_of.split(",") if c.strip()] or chosen or ["native"]
    if set(measured) - set(CONTENDERS):
        raise click.BadParameter(f"unknown contender(s) in {measured}", param_hint="latency-of")
    if latency and rate is None and set(measured) - set(chosen):
        raise click.UsageError(
            "--latency of a contender without a throughput run in this invocation needs --rate"
        )
    if (set(chosen) | set(measured if latency else ())) & QUIX.keys() and not QUIX_PYTHON.exists():
        raise click.ClickException(
            f"the Quix Streams contenders run with {QUIX_PYTHON}, which is missing: run "
            "`make bench-quix-deps` first (a venv of its own, since quixstreams pins an older "
            "confluent-kafka than Tower's)"
        )
    work = Path(tempfile.mkdtemp(prefix="tower-bench-"))
    plots_dir = plots_dir or work
    plots_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.throughput " + " ".join(sys.argv[1:])
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    try:
        tag = uuid.uuid4().hex[:6]
        click.echo(f"Generating {events} records for {customers} customers ...")
        records = _records(events, customers, seed=3)
        wire = Wire(input_format, trace)
        schema_id = None
        if input_format == "registry-avro":
            registry, schema_id = _stand_in_registry()
            settings = Settings(schema_registry_url=registry.url)
            wire = Wire(
                input_format,
                trace,
                {"schema_registry_url": registry.url, "output_format": "registry-avro"},
                lookup_for(settings),
            )
        records = _encoded(records, input_format, schema_id)
        out: dict[str, Result] = {}
        for name in chosen:
            out[name] = _run_contender(
                name,
                bootstrap,
                records,
                partitions,
                work,
                tag,
                policy_file,
                timeout,
                profile,
                broker.status().pid if broker else None,
                broker.data_dir if broker else None,
                wire,
            )
        lats: dict[str, Latency] = {}
        for name in measured if latency else ():
            at = rate or round(out[name].rate / 2)
            lats[name] = _latency(
                name, bootstrap, partitions, work, tag, policy_file, at, seconds, customers, settle
            )
    finally:
        if broker is not None:
            broker.down()
    report = _report(out, lats, profile, work, plots_dir)
    report.update(command=command, events=events, customers=customers, partitions=partitions)
    report.update(input_format=input_format, trace=trace)
    report["machine"] = machine()
    if out.keys() & QUIX.keys():
        report["machine"].update(_quix_versions())
    (work / "results.json").write_text(json.dumps(report, indent=2))
    if results:
        results.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")


def _quix_versions() -> dict[str, str]:
    """quixstreams and its confluent-kafka, as installed in .venv-quix."""
    code = (
        "import json, quixstreams, confluent_kafka as ck; v = ck.version(); "
        "print(json.dumps({'quixstreams': quixstreams.__version__, "
        "'quix_confluent_kafka': v[0] if isinstance(v, tuple) else v}))"
    )
    try:
        done = subprocess.run(
            [str(QUIX_PYTHON), "-W", "ignore", "-c", code], capture_output=True, timeout=60
        )
        versions: dict[str, str] = json.loads(done.stdout)
        return versions
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def _report_decisions(out: dict[str, Result], report: dict[str, Any]) -> None:
    """Print each deciding contender's outcome counts; within a rule set, say whether they
    are identical (outcome and rule) to the first contender's of that set in the run."""
    deciders = [k for k in out if out[k].decisions]
    if not deciders:
        return
    click.echo("\ndecisions (audit records per outcome):")
    for key in deciders:
        counts = ", ".join(f"{k} {v}" for k, v in out[key].decisions.items())
        click.echo(f"  {key:<14}{counts}")
    checks: dict[str, Any] = {}
    for label, members in RULE_SETS:
        present = [m for m in members if m in deciders]
        if len(present) < 2:
            continue
        first = present[0]
        base = out[first].decisions_by_rule
        for other in present[1:]:
            mine = out[other].decisions_by_rule
            diff = {
                k: (base.get(k, 0), mine.get(k, 0))
                for k in sorted(base.keys() | mine.keys())
                if base.get(k, 0) != mine.get(k, 0)
            }
            checks[f"{first}_vs_{other}"] = {"rule_set": label, "match": not diff, "diff": diff}
            if diff:
                shown = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items())
                click.echo(f"  MISMATCH {label}: {first} vs {other}: {shown}")
            else:
                click.echo(f"  {label}: {first} and {other} decided identically (outcome/rule)")
    report["decision_checks"] = checks


def _report(
    out: dict[str, Result],
    lats: dict[str, Latency],
    profile: bool,
    work: Path,
    plots_dir: Path,
) -> dict[str, Any]:
    """Print the final table; return everything for JSON and the docs."""
    report: dict[str, Any] = {"contenders": {}}
    click.echo()
    click.echo(
        f"{'contender':<46}{'records':>9}{'seconds':>9}{'events/s':>10}{'start→last':>12}"
        f"{'cores: it':>11}{'broker':>8}{'µs/ev: it':>11}{'broker':>8}"
    )
    for key, r in out.items():
        busy = "".join(
            f"{r.cores[k]:>{w}.2f}" if k in r.cores else f"{'-':>{w}}"
            for k, w in (("contender", 11), ("broker", 8))
        )
        us = {k: r.cpu_us_per_event(k) for k in ("contender", "broker")}
        busy += "".join(
            f"{v:>{w}.0f}" if (v := us[k]) is not None else f"{'-':>{w}}"
            for k, w in (("contender", 11), ("broker", 8))
        )
        click.echo(
            f"{r.name:<46}{r.records:>9}{r.seconds:>9.2f}{r.rate:>10.0f}{r.wall:>11.1f}s{busy}"
        )
        report["contenders"][key] = {
            "cpu_us_per_event": {k: v for k, v in us.items() if v is not None},
            "decisions": r.decisions,
            "decisions_by_rule": r.decisions_by_rule,
            "name": r.name,
            "records": r.records,
            "seconds": r.seconds,
            "events_per_s": r.rate,
            "start_to_last_s": r.wall,
            "per_second": r.per_second,
            "lag": r.lag,
            "cores": r.cores,
            "bytes_per_event": r.bytes_per_event,
        }
    for key, r in out.items():
        if r.bytes_per_event:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in r.bytes_per_event.items() if k != "total")
            click.echo(
                f"{key}: {r.bytes_per_event['total']:.0f} bytes on the broker per input ({parts})"
            )
    _report_decisions(out, report)
    #: issue 15's targets: Tower's transactional runtime against the Quix Streams peer
    targets = {"quix-eos": 1.5, "quix-alo": 1.2}
    for mine in sorted(TOWERS & out.keys()):
        for other in ("raw", "faust", "tower", "native", "quix-eos", "quix-eos-5s", "quix-alo"):
            if other != mine and other in out and out[other].rate:
                ratio = out[mine].rate / out[other].rate
                report[f"ratio_{mine}_{other}"] = ratio
                goal = targets.get(other) if mine in ("native", "native-subset") else None
                verdict = ""
                if goal is not None:
                    verdict = f"  (target >= {goal}: {'met' if ratio >= goal else 'MISSED'})"
                click.echo(f"ratio {mine} / {other:<9}{ratio:>8.3f}{verdict}")
    if out:
        series = {r.name: {"per_second": r.per_second, "lag": r.lag} for r in out.values()}
        png = plots.throughput_and_lag(series, plots_dir / "bench-throughput-lag.png")
        if png:
            click.echo(f"plot: {png}")
    for name in sorted(TOWERS & out.keys()) if profile else ():
        folded = work / f"{name}.folded"
        top = summarise_profile(folded)
        shares = inclusive_share(folded, PROFILE_MARKERS)
        report.setdefault("profiles", {})[name] = {"top_self": top, "inclusive": shares}
        if top:
            click.echo(f"\n{LABELS[name]}, py-spy: top functions by own time (self %, incl %)")
            for fn, own, incl in top:
                click.echo(f"  {own:5.1f} {incl:5.1f}  {fn}")
            click.echo("inclusive share of stacks containing:")
            for needle, share in shares.items():
                click.echo(f"  {share:5.1f}  {needle}")
    if lats:
        report["latency"] = {}
        first = next(iter(lats.values()))
        click.echo(
            f"\nend-to-end latency for {first.seconds:.1f} s at a fixed rate, after "
            f"{first.settle_s:g} s of it to settle "
            "(ms from the input's produce timestamp to the output consumed):"
        )
        heads = ("rate/s", "n", "p50", "p95", "p99", "max")
        click.echo(f"{'contender / output':<40}" + "".join(f"{h:>9}" for h in heads))
        for key, lat in lats.items():
            rows = [
                ("pass-through record" if key not in DECIDERS else "audit record", lat.audit_ms)
            ]
            if key in DECIDERS:
                rows.insert(0, ("approved action", lat.approved_ms))
                rows.insert(1, ("… of it after produce()", lat.visible_ms))
            if lat.settle_s:
                rows.append((f"settling: first {lat.settle_s:g} s", lat.settling_ms))
            entry: dict[str, Any] = {
                "rate": lat.rate,
                "produced": lat.produced,
                "seconds": lat.seconds,
                "missing_outputs": lat.missing,
                "settle_s": lat.settle_s,
                "series": lat.series,
            }
            for label, values in rows:
                p = lat.percentiles(values)
                entry[label.replace(" ", "_") + "_ms"] = {"n": len(values), **p}
                if p:
                    click.echo(
                        f"{key + ' / ' + label:<40}{lat.rate:>9.0f}{len(values):>9}"
                        + "".join(f"{p[k]:>9.1f}" for k in ("p50", "p95", "p99", "max"))
                    )
            drift = _drift([(t, ms) for t, ms in lat.series if t >= lat.settle_s])
            if drift is not None:
                entry["p50_first_vs_last_quarter_ms"] = drift
            if lat.worker_lag:
                qs = {
                    k: _bucket_quantile(lat.worker_lag, q) for k, q in (("p50", 0.5), ("p99", 0.99))
                }
                entry["worker_record_to_decision_bucket_bound_s"] = qs
                entry["worker_lag_buckets"] = lat.worker_lag
            if lat.worker_commit:
                commit = {
                    k: _bucket_quantile(lat.worker_commit, q)
                    for k, q in (("p50", 0.5), ("p99", 0.99))
                }
                entry["worker_commit_bucket_bound_s"] = commit
                click.echo(
                    f"  {key}: commit_transaction p50 <= {commit['p50']} s, "
                    f"p99 <= {commit['p99']} s (worker histogram, warm-up included)"
                )
            if lat.missing:
                click.echo(f"  {key}: {lat.missing} inputs without an output within the drain time")
            report["latency"][key] = entry
        for key, entry in report["latency"].items():
            if "p50_first_vs_last_quarter_ms" in entry:
                q1, q4 = entry["p50_first_vs_last_quarter_ms"]
                click.echo(f"  {key}: p50 in the first / last quarter {q1:.1f} / {q4:.1f} ms")
        hist = {
            (
                f"{k} @ {v.rate:.0f}/s: "
                + ("approved actions" if k in DECIDERS else "pass-through")
            ): (v.approved_ms if k in DECIDERS else v.audit_ms)
            for k, v in lats.items()
        }
        png = plots.latency_histogram(
            hist, plots_dir / "bench-latency.png", "End-to-end latency at a fixed rate"
        )
        if png:
            click.echo(f"plot: {png}")
    return report


if __name__ == "__main__":
    main()
