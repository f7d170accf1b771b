"""Sustained load: one Tower worker at a fixed share of its own measured capacity for many
minutes, sampled every second, judged against pass criteria, drawn as a chart.

    python -m bench.soak_load --runtime transactional --minutes 10 --chart-dir docs

1. Capacity, unless --rate is given: the worker's backlog rate on this broker (as
   `bench.throughput` measures it), then, by default, the highest rate a paced stream
   keeps up with while this load generator runs too (`sustained_capacity`).
2. Load: the simulator's endless stream (every rule on, hold windows on) produced at
   --load x capacity, each record stamped with its produce time.
3. Every second: consumer lag of the worker's group (committed offsets, in seconds of input),
   the worker's RSS and open file descriptors, the bytes under its data dir (RocksDB), and
   every approved action's latency (produce of its newest input -> consumed by a
   read_committed reader), whose p99 is taken per 10 s window.

It passes when lag stays under 2 s of input, the last minute's p99 is within 1.5x of the
second minute's, RSS grows less than 10 % after the first two minutes, and the open file
descriptors are flat (see `judge`). The exit status is 1 when a criterion fails.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import plots
from bench.common import (
    FULL_POLICY_FILE,
    LagSampler,
    bootstrap_option,
    broker_log_bytes,
    cpu_seconds,
    kafka_port_option,
    machine,
    percentiles,
    produce_all,
    results_option,
    start_broker,
    start_tower,
    stop_process,
    tower_settings,
    watermarks,
)
from bench.throughput import _records, _run_contender
from pipeline.contracts.codec import decode_record
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.core.policy_document import load_policy_file
from pipeline.ops.simulator import AgentSimulator
from pipeline.runtime.transactional.changelog import changelog_topic
from pipeline.runtime.transactional.polling import take_available
from pipeline.settings import RUNTIMES, Settings

#: `bench.throughput` contender that measures each runtime's capacity
CAPACITY_CONTENDER = {"faust": "tower", "transactional": "native"}
#: the criteria's fixed parts (docs/operations.md, Sustained load)
WARMUP_S = 120
WINDOW_S = 10
MAX_P99_GROWTH = 1.5
MAX_RSS_GROWTH = 0.10
#: descriptors the last minute may hold above the third minute's highest (a broker reconnect)
FD_SLACK = 4
#: the simulator's seed: the capacity backlog is the start of the soak's own stream
SEED = 23
#: the sustained-capacity ramp: first rate and step, as shares of the backlog rate; the
#: length of a step; the lag a step may end with and gain, in seconds of input
RAMP_FROM, RAMP_STEP, RAMP_UP_TO = 0.4, 0.1, 1.2
RAMP_STEP_S = 20.0
RAMP_MAX_LAG_S, RAMP_MAX_GAIN_S = 1.5, 1.0


@dataclass
class Sample:
    """One second of the run, `t` seconds after the paced stream started."""

    t: float
    produced: int
    lag_records: int
    rss_mib: float
    fds: int
    state_mib: float
    #: cores busy over the last second: the worker, the broker (private broker only; else
    #: 0), and the whole machine, of which `steal_cores` went to other guests
    worker_cores: float = 0.0
    broker_cores: float = 0.0
    machine_cores: float = 0.0
    steal_cores: float = 0.0
    #: page cache waiting to be written to disk (Dirty + Writeback)
    dirty_mib: float = 0.0


@dataclass
class Run:
    runtime: str
    rate: float
    capacity: float | None
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    #: (seconds after the start the action was seen, latency ms)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    actions: int = 0
    produced: int = 0
    #: bytes the worker wrote to its output topics during the soak per input, by kind
    #: (needs the private broker's disk)
    bytes_per_input: dict[str, float] = field(default_factory=dict)

    def windows(self) -> list[tuple[float, float]]:
        """(window start s, p99 ms) per WINDOW_S window of approved actions seen."""
        by: dict[int, list[float]] = collections.defaultdict(list)
        for t, ms in self.latencies:
            by[int(t // WINDOW_S)].append(ms)
        return [(w * WINDOW_S, percentiles(v)["p99"]) for w, v in sorted(by.items())]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tree_mib(root: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # compacted away meanwhile
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total / 2**20


def _machine_jiffies() -> tuple[int, int, int]:
    """(busy, steal, all) jiffies of every core since boot, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    busy = user + nice + system + irq + softirq + steal
    return busy, steal, busy + idle + iowait


def _dirty_mib() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(fields[k].split()[0]) for k in ("Dirty", "Writeback")) / 1024


class _CpuMeter:
    """Cores busy between calls, per process and for the machine: the load generator, the
    broker and the worker share the cores, so a stall shows who had them."""

    def __init__(self, worker_pid: int, broker_pid: int | None) -> None:
        self.pids = {"worker": worker_pid, "broker": broker_pid}
        self.cores = os.cpu_count() or 1
        self._last = self._read()

    def _read(self) -> tuple[float, dict[str, float | None], tuple[int, int, int]]:
        return (
            time.monotonic(),
            {k: cpu_seconds(pid) for k, pid in self.pids.items()},
            _machine_jiffies(),
        )

    def sample(self) -> dict[str, float]:
        now = self._read()
        (t0, procs0, (busy0, steal0, all0)), (t1, procs1, (busy1, steal1, all1)) = self._last, now
        self._last = now
        span, ticks = max(t1 - t0, 1e-6), max(all1 - all0, 1)
        out = {}
        for k in self.pids:
            a, b = procs0[k], procs1[k]
            out[f"{k}_cores"] = (b - a) / span if a is not None and b is not None else 0.0
        out["machine_cores"] = self.cores * (busy1 - busy0) / ticks
        out["steal_cores"] = self.cores * (steal1 - steal0) / ticks
        return out


class _Pacer(threading.Thread):
    """Produces records at `rate` per second (which may change while it runs), noting each
    event's produce time."""

    def __init__(self, bootstrap: str, topic: str, records: Iterator[Any], rate: float) -> None:
        super().__init__(daemon=True, name="soak-producer")
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
            | JAVA_PARTITIONER
        )
        self.topic, self.records, self.rate = topic, records, rate
        self.produced = 0
        #: event id -> produce time (s); pruned to the last minute by the reader
        self.produced_at: dict[str, float] = {}
        self.start_s = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        self.start_s = due = time.time()
        for i, rec in enumerate(self.records):
            if self._stop_event.is_set():
                break
            due += 1 / self.rate  # read per record: the ramp raises it while running
            delay = due - time.time()
            if delay > 0.001:
                time.sleep(delay)
            now_ms = int(time.time() * 1000)
            self.produced_at.setdefault(rec.event.event_id, now_ms / 1000)
            while True:
                try:
                    self.producer.produce(
                        self.topic, key=rec.key, value=rec.value, timestamp=now_ms
                    )
                    break
                except BufferError:
                    self.producer.poll(0.001)
            self.producer.poll(0)
            self.produced = i + 1
        self.producer.flush(30)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)


class _ActionReader(threading.Thread):
    """Reads approved actions as they become visible (read_committed) and times each one
    from the produce of the newest input it depends on."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, pacer: _Pacer) -> None:
        super().__init__(daemon=True, name="soak-actions")
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"soak-actions-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        ends = [
            self.consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
            for p in range(partitions)
        ]
        # from the end: a pre-fill's actions are not the soak's
        self.consumer.assign([TopicPartition(topic, p, max(0, e)) for p, e in enumerate(ends)])
        self.pacer = pacer
        self.latencies: list[tuple[float, float]] = []
        self.actions = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        forget = time.monotonic() + 60
        while not self._stop_event.is_set():
            for msg in take_available(self.consumer, 1000, 0.05):
                if msg.error():
                    continue
                seen = time.time()
                self.actions += 1
                ids = decode_record("approved_action", msg.value())["source_event_ids"]
                times = [t for i in ids if (t := self.pacer.produced_at.get(i)) is not None]
                if times:
                    self.latencies.append((seen - self.pacer.start_s, 1000 * (seen - max(times))))
            if time.monotonic() > forget:  # inputs older than 2 min no longer cause actions
                cutoff = time.time() - 120
                at = self.pacer.produced_at
                for key in [k for k, t in list(at.items()) if t < cutoff]:
                    at.pop(key, None)
                forget = time.monotonic() + 60
        self.consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def _wait_owned(port: int, proc: Any, timeout: float = 120) -> None:
    """Until the worker's /healthz says it owns partitions (start-up is not the soak)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"the worker exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if json.loads(resp.read()).get("partitions"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise click.ClickException(f"the worker owned no partition within {timeout:.0f} s")


def _prefill(
    bootstrap: str,
    settings: Settings,
    stream: Iterator[Any],
    records: int,
    partitions: int,
    proc: subprocess.Popen[bytes],
) -> None:
    """Bring the states to steady state first: at a soak's rates a customer's replay memory
    fills only after minutes, and until then RSS and the RocksDB files grow with it."""
    topic = settings.topics.events
    with click.progressbar(length=records, label=f"{'pre-filling the states':<28}") as bar:
        for start in range(0, records, 50_000):
            chunk = [
                (r.key, r.value) for r in itertools.islice(stream, min(50_000, records - start))
            ]
            produce_all(bootstrap, topic, chunk)
            bar.update(len(chunk))
    lag = LagSampler(bootstrap, settings.app_id, topic, partitions, time.time())
    lag.start()
    try:
        waited = time.monotonic()
        while not lag.samples or lag.samples[-1][1] > 0:
            if proc.poll() is not None:
                raise click.ClickException(f"the worker died ({proc.returncode}) pre-filling")
            if lag.samples and time.monotonic() - waited > 30:
                click.echo(f"  {lag.samples[-1][1]:,} records of the pre-fill still to decide")
                waited = time.monotonic()
            time.sleep(1)
    finally:
        lag.stop()


@dataclass
class _Loaded:
    """A worker owning its partitions, with the paced stream, the action reader and the lag
    sampler running."""

    proc: subprocess.Popen[bytes]
    settings: Settings
    pacer: _Pacer
    reader: _ActionReader
    lag: LagSampler
    t0: float


@contextlib.contextmanager
def _loaded_worker(
    runtime: str,
    bootstrap: str,
    name: str,
    rate: float,
    customers: int,
    partitions: int,
    policy_file: Path,
    work: Path,
    prefill: int = 0,
) -> Iterator[_Loaded]:
    """A worker on a fresh group, once it owns partitions (start-up is not the load) and
    has decided `prefill` records of the stream as a backlog, under the rest of the
    stream paced at `rate`; everything is stopped on the way out."""
    work.mkdir(parents=True, exist_ok=True)
    settings = tower_settings(
        bootstrap, f"{name}-{uuid.uuid4().hex[:6]}", partitions, work / "data"
    )
    proc, port = start_tower(settings, policy_file, work / f"worker-{runtime}.log", runtime=runtime)
    try:
        _wait_owned(port, proc)
        sim = AgentSimulator(customers=customers, seed=SEED, replay_memory=10_000)
        stream = sim.endless()
        if prefill:
            _prefill(bootstrap, settings, stream, prefill, partitions, proc)
        pacer = _Pacer(bootstrap, settings.topics.events, stream, rate)
        reader = _ActionReader(bootstrap, settings.topics.approved, partitions, pacer)
        t0 = time.time()
        lag = LagSampler(bootstrap, settings.app_id, settings.topics.events, partitions, t0)
        reader.start()
        lag.start()
        pacer.start()
        try:
            yield _Loaded(proc, settings, pacer, reader, lag, t0)
        finally:
            pacer.stop()
            reader.stop()
            lag.stop()
    finally:
        stop_process(proc)


def soak(
    runtime: str,
    bootstrap: str,
    rate: float,
    capacity: float | None,
    seconds: float,
    customers: int,
    partitions: int,
    policy_file: Path,
    work: Path,
    prefill: int = 0,
    broker_data: Path | None = None,
    broker_pid: int | None = None,
) -> Run:
    run = Run(runtime, rate, capacity, seconds)
    with _loaded_worker(
        runtime, bootstrap, "soak", rate, customers, partitions, policy_file, work, prefill
    ) as w:
        written_before = broker_log_bytes(broker_data) if broker_data else {}
        changelog = changelog_topic(w.settings.app_id)
        changelog_before = _ends(bootstrap, changelog, partitions)
        cpu = _CpuMeter(w.proc.pid, broker_pid)
        label = f"{runtime} @ {rate:.0f}/s"
        with click.progressbar(length=int(seconds), label=f"{label:<28}", show_pos=True) as bar:
            while time.time() - w.t0 < seconds:
                tick = time.monotonic()
                if w.proc.poll() is not None:
                    raise click.ClickException(f"the worker died ({w.proc.returncode}) mid-soak")
                run.samples.append(
                    Sample(
                        time.time() - w.t0,
                        w.pacer.produced,
                        w.lag.samples[-1][1] if w.lag.samples else 0,
                        _rss_mib(w.proc.pid),
                        _fds(w.proc.pid),
                        _tree_mib(w.settings.data_dir),
                        dirty_mib=_dirty_mib(),
                        **cpu.sample(),
                    )
                )
                bar.update(1)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        w.pacer.stop()
        time.sleep(5)  # the last inputs' actions
        if broker_data:
            written = broker_log_bytes(broker_data)
            delta = {t: n - written_before.get(t, 0) for t, n in written.items()}
            delta[changelog] = round(
                changelog_bytes(
                    broker_data,
                    changelog,
                    changelog_before,
                    _ends(bootstrap, changelog, partitions),
                )
            )
            run.bytes_per_input = _per_input(delta, w.settings, w.pacer.produced)
    run.latencies, run.actions, run.produced = (
        w.reader.latencies,
        w.reader.actions,
        w.pacer.produced,
    )
    return run


def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    return {p: end for p, (_, end) in watermarks(bootstrap, topic, partitions).items()}


#: offsets an active segment must span for its bytes per offset to count
MIN_SEGMENT_OFFSETS = 1_000


def changelog_bytes(
    data_dir: Path, topic: str, before: dict[int, int], after: dict[int, int]
) -> float:
    """Bytes written to a compacted topic between two sets of end offsets: the offsets
    written times the bytes per offset of its partitions' active segments. The cleaner
    never touches an active segment, while it shrinks the rolled ones during a long soak,
    so the growth of the files is no measure; offsets are not compacted away."""
    seg_bytes = seg_offsets = 0
    for p, end in after.items():
        logs = sorted((data_dir / f"{topic}-{p}").glob("*.log"))  # named by base offset
        if logs and end - int(logs[-1].stem) >= MIN_SEGMENT_OFFSETS:
            seg_bytes += logs[-1].stat().st_size
            seg_offsets += end - int(logs[-1].stem)
    written = sum(end - before.get(p, 0) for p, end in after.items())
    return written * seg_bytes / seg_offsets if seg_offsets else 0.0


def _per_input(delta: dict[str, int], settings: Settings, inputs: int) -> dict[str, float]:
    """The worker's output topics' bytes per input, by kind, and their total: actions,
    audit, wake-ups, dead letters and the state changelog (whose entry `changelog_bytes`
    estimates: the growth of its files is no measure)."""
    t = settings.topics
    roles = {
        t.approved: "approved",
        t.audit: "audit",
        t.wakeups: "wakeups",
        t.deadletter: "dead",
        changelog_topic(settings.app_id): "changelog",
    }
    out: collections.Counter[str] = collections.Counter()
    for topic, size in delta.items():
        if topic in roles:
            out[roles[topic]] += size / max(1, inputs)
    out["total"] = sum(out.values())
    return dict(out)


def keeps_up(lag_before: int, lag_after: int, rate: float) -> bool:
    """A ramp step held its rate: it ended with little lag and gained little more."""
    return lag_after / rate < RAMP_MAX_LAG_S and (lag_after - lag_before) / rate < RAMP_MAX_GAIN_S


def sustained_capacity(
    runtime: str,
    bootstrap: str,
    backlog_rate: float,
    customers: int,
    partitions: int,
    policy_file: Path,
    work: Path,
) -> tuple[float, list[tuple[float, float, bool]]]:
    """The highest paced rate the worker keeps up with while the soak's own load generator
    and action reader run on the same machine: the backlog rate is measured with neither
    running, and on a small machine they take a share of the cores the worker then lacks.

    After a warm-up step (the worker's first seconds, the customers' consent opening),
    steps of RAMP_STEP_S from RAMP_FROM x the backlog rate, up by RAMP_STEP x it, until a
    step falls behind (`keeps_up`). Returns the last rate held (the first step's if none
    held) and the steps (rate, lag s, held)."""
    steps: list[tuple[float, float, bool]] = []
    rate = best = RAMP_FROM * backlog_rate
    with _loaded_worker(
        runtime, bootstrap, "ramp", rate, customers, partitions, policy_file, work
    ) as w:

        def settled_lag() -> int:
            """The least of the step's last seconds: committed lag saws with each commit."""
            if w.proc.poll() is not None:
                raise click.ClickException(f"the worker died ({w.proc.returncode}) mid-ramp")
            recent = [n for t, n, _ in w.lag.samples if t >= time.time() - w.t0 - 5]
            return min(recent, default=0)

        time.sleep(RAMP_STEP_S)  # a warm-up step at the first rate, not judged
        before = settled_lag()
        while rate <= RAMP_UP_TO * backlog_rate:
            w.pacer.rate = rate
            time.sleep(RAMP_STEP_S)
            after = settled_lag()
            held = keeps_up(before, after, rate)
            steps.append((rate, after / rate, held))
            click.echo(
                f"  {rate:7.0f}/s: lag {after / rate:5.2f} s, {'held' if held else 'behind'}"
            )
            if not held:
                break
            best, before = rate, after
            rate += RAMP_STEP * backlog_rate
    return best, steps


#: cores other guests of the host may take before a second counts as stolen, and how long
#: lag takes to drain after such a second
STEAL_CORES, STEAL_AFTER_S = 0.25, 30.0


def stolen(run: Run) -> dict[str, float]:
    """Not a criterion: how much CPU the host gave other guests during the soak, and the
    largest lag away from it (no stolen second in the STEAL_AFTER_S before), so that a
    failed criterion says whether the worker or the shared machine fell behind."""
    rate = run.rate or 1.0
    stolen_at = [s.t for s in run.samples if s.steal_cores >= STEAL_CORES]
    calm = [
        s.lag_records / rate
        for s in run.samples
        if not any(0 <= s.t - t < STEAL_AFTER_S for t in stolen_at)
    ]
    return {
        "seconds": float(len(stolen_at)),
        "max_cores": max((s.steal_cores for s in run.samples), default=0.0),
        "mean_cores": sum(s.steal_cores for s in run.samples) / max(1, len(run.samples)),
        "max_lag_s_away_from_it": max(calm, default=0.0),
    }


def judge(run: Run) -> dict[str, dict[str, Any]]:
    """Each criterion: its measured value, the bound, and whether it holds."""
    rate = run.rate or 1.0
    max_lag_s = max((s.lag_records / rate for s in run.samples), default=0.0)

    def p99_between(lo: float, hi: float) -> float | None:
        values = [ms for t, ms in run.latencies if lo <= t < hi]
        return percentiles(values)["p99"] if values else None

    end = run.seconds
    second_minute, last_minute = p99_between(60, 120), p99_between(end - 60, end)
    long_enough = end >= WARMUP_S + 60
    at_mark = [s for s in run.samples if WARMUP_S - 5 <= s.t <= WARMUP_S + 5 and long_enough]
    later = [s for s in run.samples if s.t > WARMUP_S]
    last = [s for s in run.samples if s.t >= end - 60]
    rss_mark = sorted(s.rss_mib for s in at_mark)[len(at_mark) // 2] if at_mark else None
    rss_end = sorted(s.rss_mib for s in last)[len(last) // 2] if last else None
    # the same statistic over two equal windows: RocksDB's table files come and go with
    # its compactions, so a minimum against a maximum would call that swing growth
    after_mark = [s for s in run.samples if WARMUP_S <= s.t < WARMUP_S + 60 and long_enough]
    fd_mark = max((s.fds for s in after_mark), default=None)
    fd_last = max((s.fds for s in last), default=None)
    out: dict[str, dict[str, Any]] = {
        "lag": {"max_s": max_lag_s, "bound_s": 2.0, "ok": max_lag_s < 2.0},
    }
    if second_minute and last_minute:
        growth = last_minute / second_minute
        out["p99"] = {
            "second_minute_ms": second_minute,
            "last_minute_ms": last_minute,
            "ratio": growth,
            "bound": MAX_P99_GROWTH,
            "ok": growth <= MAX_P99_GROWTH,
        }
    else:
        out["p99"] = {"ok": False, "why": "no approved actions in the second or last minute"}
    if rss_mark and rss_end and later:
        growth = rss_end / rss_mark - 1
        peak = max(s.rss_mib for s in later)
        out["rss"] = {
            "at_2_min_mib": rss_mark,
            "last_minute_mib": rss_end,
            "peak_after_2_min_mib": peak,
            "growth": growth,
            "bound": MAX_RSS_GROWTH,
            "ok": growth < MAX_RSS_GROWTH,
        }
    else:
        out["rss"] = {"ok": False, "why": f"a run shorter than {WARMUP_S + 60} s"}
    if fd_mark is not None and fd_last is not None:
        out["fds"] = {
            "third_minute_max": fd_mark,
            "last_minute_max": fd_last,
            "slack": FD_SLACK,
            "ok": fd_last <= fd_mark + FD_SLACK,
        }
    else:
        out["fds"] = {"ok": False, "why": f"a run shorter than {WARMUP_S + 60} s"}
    return out


def _print(run: Run, verdict: dict[str, dict[str, Any]], steal: dict[str, float]) -> None:
    achieved = run.produced / run.seconds if run.seconds else 0.0
    click.echo(
        f"\n{run.runtime}: {run.produced} inputs in {run.seconds:.0f} s ({achieved:.0f}/s, "
        f"target {run.rate:.0f}/s"
        + (f" = {run.rate / run.capacity:.0%} of {run.capacity:.0f}/s" if run.capacity else "")
        + f"), {run.actions} approved actions"
    )
    lag, p99, rss, fds = (verdict[k] for k in ("lag", "p99", "rss", "fds"))
    lines = [
        ("lag < 2 s of input", lag, f"max {lag['max_s']:.2f} s"),
        (
            f"p99 last minute <= {MAX_P99_GROWTH}x second minute",
            p99,
            f"{p99['second_minute_ms']:.0f} -> {p99['last_minute_ms']:.0f} ms ({p99['ratio']:.2f}x)"
            if "ratio" in p99
            else p99["why"],
        ),
        (
            f"RSS growth after {WARMUP_S // 60} min < {MAX_RSS_GROWTH:.0%}",
            rss,
            f"{rss['at_2_min_mib']:.0f} -> {rss['last_minute_mib']:.0f} MiB "
            f"({rss['growth']:+.1%}, peak {rss['peak_after_2_min_mib']:.0f})"
            if "growth" in rss
            else rss["why"],
        ),
        (
            "open file descriptors flat",
            fds,
            f"highest {fds['third_minute_max']} in minute 3 -> {fds['last_minute_max']} in the last"
            if "slack" in fds
            else fds["why"],
        ),
    ]
    for name, crit, figure in lines:
        click.echo(f"  {'PASS' if crit['ok'] else 'FAIL'}  {name:<44} {figure}")
    click.echo(
        f"  note  CPU taken by other guests of the host: {steal['seconds']:.0f} s at >= "
        f"{STEAL_CORES} cores (max {steal['max_cores']:.2f}, mean {steal['mean_cores']:.2f}); "
        f"lag away from them: max {steal['max_lag_s_away_from_it']:.2f} s"
    )
    if run.bytes_per_input:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in run.bytes_per_input.items() if k != "total")
        click.echo(
            f"  bytes on the broker per input (outputs and changelog, after compression): "
            f"{run.bytes_per_input['total']:.0f} ({parts})"
        )


def _chart(run: Run, out: Path) -> Path | None:
    rows = [
        {
            "t": s.t,
            "lag_s": s.lag_records / (run.rate or 1.0),
            "rss_mib": s.rss_mib,
            "fds": s.fds,
            "state_mib": s.state_mib,
            "produced": s.produced,
            "worker_cores": s.worker_cores,
            "broker_cores": s.broker_cores,
            "machine_cores": s.machine_cores,
            "steal_cores": s.steal_cores,
            "dirty_mib": s.dirty_mib,
        }
        for s in run.samples
    ]
    per_second: collections.Counter[int] = collections.Counter(int(t) for t, _ in run.latencies)
    title = f"{run.runtime} runtime at {run.rate:.0f} events/s" + (
        f" ({run.rate / run.capacity:.0%} of its measured {run.capacity:.0f}/s)"
        if run.capacity
        else ""
    )
    return plots.soak_load(rows, run.windows(), dict(per_second), title, out)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--runtime",
    "runtimes",
    default="transactional,faust",
    show_default=True,
    help="Comma list of runtimes to soak, one after the other.",
)
@click.option("--minutes", default=10.0, show_default=True, help="Length of each soak.")
@click.option(
    "--load", default=0.7, show_default=True, help="Share of the measured capacity to produce."
)
@click.option(
    "--rate", type=float, help="Events/s to produce instead of --load x the measured capacity."
)
@click.option(
    "--capacity-events",
    default=60_000,
    show_default=True,
    help="Backlog records for the capacity measurement: the soak's own stream, from its "
    "start (the customers' consent opening is about 1.2 records per customer of it).",
)
@click.option(
    "--capacity-from",
    type=click.Choice(["sustained", "backlog"]),
    default="sustained",
    show_default=True,
    help="What --load is a share of: the backlog rate (`bench.throughput`'s, no producer "
    "running), or the highest paced rate the worker keeps up with while the soak's own load "
    "generator and action reader run (a ramp from the backlog rate's 40 % in 20 s steps; on "
    "a small machine they take cores the backlog run leaves to the worker).",
)
@click.option(
    "--prefill",
    type=int,
    help="Records of the stream the worker decides as a backlog before the soak starts, so "
    "that it starts with the states at steady state: at a soak's rates a replay memory fills "
    "only after minutes, and RSS, descriptors and RocksDB grow with it until then, which is "
    "warm-up, not a leak. [default: customers x the policy's replay_memory, which fills every "
    "memory: 1,000,000 for 5,000 customers; about 5 min on the transactional runtime and "
    "12-15 min on the Faust runtime on a 2-core machine; 0 soaks from empty states]",
)
@click.option("--customers", default=5_000, show_default=True, help="Distinct customers.")
@click.option("--partitions", default=8, show_default=True, help="Partitions of every topic.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=FULL_POLICY_FILE,
    show_default=True,
    help="Policy of the worker (the default has every rule and hold windows on).",
)
@click.option(
    "--chart-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write soak-load-<runtime>.png here [default: the run's temp dir].",
)
@results_option
@bootstrap_option
@kafka_port_option(39592)
def main(
    runtimes: str,
    minutes: float,
    load: float,
    rate: float | None,
    capacity_events: int,
    capacity_from: str,
    prefill: int | None,
    customers: int,
    partitions: int,
    policy_file: Path,
    chart_dir: Path | None,
    results: Path | None,
    bootstrap: str | None,
    kafka_port: int,
) -> None:
    """Hold each runtime at --load of its measured capacity for --minutes; sample lag,
    latency, RSS, file descriptors and state size every second; print PASS/FAIL per
    criterion and draw the series. Exits 1 if any criterion fails."""
    chosen = [r.strip() for r in runtimes.split(",") if r.strip()]
    if unknown := set(chosen) - set(RUNTIMES):
        raise click.BadParameter(f"unknown runtime(s) {sorted(unknown)}", param_hint="runtime")
    if not 0 < load <= 1.5:
        raise click.BadParameter("must be in (0, 1.5]", param_hint="load")
    if prefill is None:
        prefill = customers * load_policy_file(policy_file).replay_memory
    work = Path(tempfile.mkdtemp(prefix="tower-soak-load-"))
    chart_dir = chart_dir or work
    chart_dir.mkdir(parents=True, exist_ok=True)
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    report: dict[str, Any] = {
        "command": "python -m bench.soak_load " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "runs": {},
    }
    failed = False
    try:
        for runtime in chosen:
            capacity = None
            target = rate
            if target is None:
                click.echo(f"Measuring the {runtime} runtime's capacity on a backlog ...")
                measured = _run_contender(
                    CAPACITY_CONTENDER[runtime],
                    bootstrap,
                    _records(capacity_events, customers, seed=SEED),
                    partitions,
                    work,
                    uuid.uuid4().hex[:6],
                    policy_file,
                    600.0,
                    False,
                    broker.status().pid if broker else None,
                )
                capacity = backlog = measured.rate
                click.echo(f"backlog rate {backlog:.0f} events/s")
                if capacity_from == "sustained":
                    click.echo("Ramping a paced stream to the rate it keeps up with ...")
                    capacity, steps = sustained_capacity(
                        runtime,
                        bootstrap,
                        backlog,
                        customers,
                        partitions,
                        policy_file,
                        work / f"ramp-{runtime}",
                    )
                    report["runs"].setdefault(runtime, {})["ramp"] = steps
                target = load * capacity
                click.echo(
                    f"capacity ({capacity_from}) {capacity:.0f} events/s -> soaking at "
                    f"{target:.0f}/s"
                )
            run = soak(
                runtime,
                bootstrap,
                target,
                capacity,
                minutes * 60,
                customers,
                partitions,
                policy_file,
                work / runtime,
                prefill,
                broker.data_dir if broker else None,
                broker.status().pid if broker else None,
            )
            verdict = judge(run)
            steal = stolen(run)
            _print(run, verdict, steal)
            failed |= not all(c["ok"] for c in verdict.values())
            png = _chart(run, chart_dir / f"soak-load-{runtime}.png")
            if png:
                click.echo(f"  chart: {png}")
            report["runs"].setdefault(runtime, {}).update(
                {
                    "capacity_from": capacity_from,
                    "rate": run.rate,
                    "capacity": run.capacity,
                    "seconds": run.seconds,
                    "produced": run.produced,
                    "actions": run.actions,
                    "criteria": verdict,
                    "stolen": steal,
                    "samples": [s.__dict__ for s in run.samples],
                    "p99_windows": run.windows(),
                    "bytes_per_input": run.bytes_per_input,
                }
            )
    finally:
        if broker is not None:
            broker.down()
    (work / "results.json").write_text(json.dumps(report, indent=2))
    if results:
        results.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
