"""Memory and recovery figures of the state table: bytes per customer, peak RSS of a worker
holding N customers, RocksDB and changelog size, and how fast a fresh worker restores.

Three parts, one invocation:

  a. `CustomerState.to_bytes()` size of simulated customers after ~20 events each (pure);
  b. one consent signal per customer for N customers through `python -m pipeline.ops.cli
     worker`: peak RSS (VmHWM), RocksDB data dir on disk, changelog topic size;
  c. a second worker, same app id, empty data dir: changelog restore speed in keys/s, from
     the bulk restore's log line, from Faust's recovery log lines (what it had left), and
     from a marker event produced at its start.

    python -m bench.state_size --customers 200000
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bench.common import (
    FULL_POLICY_FILE,
    machine,
    produce_all,
    start_broker,
    start_profile,
    start_tower,
    stop_process,
    stop_profile,
    summarise_profile,
    tower_settings,
    watch,
    watermarks,
)
from pipeline.contracts.codec import decode_event, encode_event
from pipeline.contracts.events import AgentEvent, Signal
from pipeline.core.arbitration import decide
from pipeline.core.policy_document import load_policy_file
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.ops.local_kafka import LocalKafka
from pipeline.ops.simulator import AgentSimulator
from pipeline.runtime.faust.app import STATE_TABLE

_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
#: pipeline.kafka.changelog_restore's line
_RESTORED = re.compile(r"restored (\d+) keys into \d+ partition\(s\) in ([\d.]+)s")


def state_bytes(customers: int, events_per_customer: int, policy_file: Path) -> dict[str, Any]:
    """(a) Serialized state per customer after the simulator's mix, decided by the pure core."""
    policy = load_policy_file(policy_file)
    records = AgentSimulator(customers=customers, seed=5).records(customers * events_per_customer)
    states: dict[str, CustomerState] = {}
    for r in records:
        ev = decode_event(r.key, r.value)
        state = states.get(ev.customer_id, EMPTY_STATE)
        states[ev.customer_id] = decide(state, ev, policy, ev.occurred_at)[1]
    sizes = sorted(len(s.to_bytes()) for s in states.values())
    events = [s.events for s in states.values()]
    return {
        "customers": len(states),
        "events_per_customer_mean": statistics.fmean(events),
        "bytes_mean": statistics.fmean(sizes),
        "bytes_p50": sizes[len(sizes) // 2],
        "bytes_p95": sizes[int(len(sizes) * 0.95)],
        "bytes_max": sizes[-1],
        "key_bytes": len(b"cust-00000"),
    }


def _consent(i: int, at: int) -> tuple[bytes, bytes]:
    customer = f"c{i:08d}"
    event = AgentEvent(
        event_id=f"consent-{i}",
        customer_id=customer,
        occurred_at=at + i,
        kind="signal",
        agent="crm",
        department="system",
        signal=Signal("consent_changed", {"channel": "all", "purpose": "all", "granted": "true"}),
    )
    return customer.encode(), encode_event(event, "avro")


def _status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a live process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _records(bootstrap: str, topic: str, partitions: int) -> int:
    return sum(end - first for first, end in watermarks(bootstrap, topic, partitions).values())


def _log_times(log: Path, start: str, end: str) -> float | None:
    """Seconds between the first log line containing `start` and the next containing `end`."""
    t_start = None
    for line in log.read_text(errors="replace").splitlines():
        m = _LOG_TIME.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if t_start is None and start in line:
            t_start = t
        elif t_start is not None and end in line:
            return t - t_start
    return None


def worker_figures(
    bootstrap: str,
    broker: LocalKafka | None,
    customers: int,
    partitions: int,
    work: Path,
    policy_file: Path,
    timeout: float,
    profile: bool = False,
) -> dict[str, Any]:
    """(b) and (c): fill a worker with `customers` states, measure, then restore elsewhere."""
    tag = uuid.uuid4().hex[:6]
    settings = tower_settings(bootstrap, f"{tag}-state", partitions, work / "tower-a")
    t = settings.topics
    changelog = f"{settings.app_id}-{STATE_TABLE}-changelog"
    click.echo(f"Encoding {customers} consent signals ...")
    at = 1_767_225_600_000
    records = [_consent(i, at) for i in range(customers)]
    from pipeline.kafka.topics import create_topics

    create_topics(settings).raise_for_problems()
    click.echo("Producing ...")
    produce_all(bootstrap, t.events, records)
    del records

    t0 = time.time()
    proc, _ = start_tower(settings, policy_file, work / "tower-a.log", loglevel="info")
    try:
        w = watch(bootstrap, t.audit, partitions, customers, timeout, "fill worker", t0)
        time.sleep(3)  # let the last state writes and the changelog flush
        st = _status(proc.pid)
    finally:
        stop_process(proc)
    fill = {
        "customers": customers,
        "processed": w.records,
        "events_per_s": w.records / w.span if w.span else 0.0,
        "start_to_first_output_s": (w.first - t0) if w.first else None,
        "peak_rss_mib": st["VmHWM"] / 1024,
        "rss_after_mib": st["VmRSS"] / 1024,
        "rocksdb_bytes": _du(settings.data_dir),
    }
    fill["changelog_records"] = _records(bootstrap, changelog, partitions)
    if broker is not None:  # a local broker: the changelog's segments (not preallocated indexes)
        on_disk = sum(
            f.stat().st_size
            for p in range(partitions)
            for f in (broker.data_dir / f"{changelog}-{p}").glob("*.log")
        )
        fill["changelog_disk_bytes"] = on_disk
        fill["changelog_bytes_per_record"] = on_disk / max(1, fill["changelog_records"])

    # (c) a fresh worker, same app id (same group, same changelog), empty data dir
    fresh = tower_settings(bootstrap, f"{tag}-state", partitions, work / "tower-b")
    log = work / "tower-b.log"
    t1 = time.time()
    proc, _ = start_tower(fresh, policy_file, log, loglevel="info")
    spy = start_profile(proc.pid, work / "restore.folded") if profile else None
    try:
        marker = _consent(customers + 1, at)
        produce_all(bootstrap, t.events, [marker])
        seen = _wait_for_new_audit(bootstrap, t.audit, partitions, customers, timeout)
        time.sleep(1)
        st = _status(proc.pid)
    finally:
        stop_profile(spy)
        stop_process(proc)
    restore_log_s = _log_times(
        log, "Restoring state from changelog topics", "Done reading from changelog topics"
    )
    restored = fill["changelog_records"]
    bulk = [(int(k), float(s)) for k, s in _RESTORED.findall(log.read_text(errors="replace"))]
    bulk_keys, bulk_s = sum(k for k, _ in bulk), sum(s for _, s in bulk)
    fill["restore"] = {
        "changelog_records": restored,
        "bulk_keys": bulk_keys,
        "bulk_seconds": bulk_s,
        "keys_per_s_bulk": bulk_keys / bulk_s if bulk_s else None,
        "faust_recovery_seconds": restore_log_s,
        "start_to_marker_s": (seen - t1) if seen else None,
        "peak_rss_mib": st["VmHWM"] / 1024,
        "rocksdb_bytes": _du(fresh.data_dir),
    }
    baseline = fill["start_to_first_output_s"]
    if seen and baseline:
        net = (seen - t1) - baseline
        fill["restore"]["keys_per_s_marker"] = restored / net if net > 0 else None
    if profile:
        fill["restore"]["profile_top_self"] = summarise_profile(work / "restore.folded")
    return fill


def _wait_for_new_audit(
    bootstrap: str, topic: str, partitions: int, before: int, timeout: float
) -> float | None:
    """Wall clock at which the audit topic holds more than `before` records (the marker)."""
    deadline = time.monotonic() + timeout
    with click.progressbar(length=int(timeout), label=f"{'restore (waiting)':<22}") as bar:
        while time.monotonic() < deadline:
            if _records(bootstrap, topic, partitions) > before:
                return time.time()
            time.sleep(0.25)
            bar.update(0)
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--customers", default=1_000_000, show_default=True, help="States the worker holds in (b)."
)
@click.option(
    "--sample-customers", default=2_000, show_default=True, help="Customers simulated in (a)."
)
@click.option("--events-per-customer", default=20, show_default=True, help="Events each, in (a).")
@click.option("--partitions", default=8, show_default=True)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=FULL_POLICY_FILE,
    show_default=True,
)
@click.option("--results", type=click.Path(path_type=Path, dir_okay=False), help="JSON here too.")
@click.option("--bootstrap", envvar="TOWER_BOOTSTRAP", help="Use this broker, do not start one.")
@click.option("--kafka-port", default=39492, show_default=True, help="Port of the private broker.")
@click.option("--timeout", default=1800.0, show_default=True, help="Give up on a phase after.")
@click.option(
    "--profile/--no-profile",
    default=False,
    help="py-spy on the restoring worker, from its start to the marker (restore.folded).",
)
def main(
    customers: int,
    sample_customers: int,
    events_per_customer: int,
    partitions: int,
    policy_file: Path,
    results: Path | None,
    bootstrap: str | None,
    kafka_port: int,
    timeout: float,
    profile: bool,
) -> None:
    """State bytes per customer, a worker's peak RSS and disk use for N customers, and the
    restore speed of a fresh worker from the changelog."""
    work = Path(tempfile.mkdtemp(prefix="tower-state-"))
    a = state_bytes(sample_customers, events_per_customer, policy_file)
    click.echo(
        f"(a) state bytes per customer after {a['events_per_customer_mean']:.1f} events: "
        f"mean {a['bytes_mean']:.0f}, p50 {a['bytes_p50']}, p95 {a['bytes_p95']}, "
        f"max {a['bytes_max']}"
    )
    bootstrap, broker = start_broker(bootstrap, kafka_port, work / "kafka")
    try:
        b = worker_figures(
            bootstrap, broker, customers, partitions, work, policy_file, timeout, profile
        )
    finally:
        if broker is not None:
            broker.down()
    r = b["restore"]
    click.echo(
        f"(b) {b['processed']} customers at {b['events_per_s']:.0f} events/s: peak RSS "
        f"{b['peak_rss_mib']:.0f} MiB, RocksDB {b['rocksdb_bytes'] / 2**20:.1f} MiB, changelog "
        f"{b['changelog_records']} records"
        + (
            f", {b['changelog_disk_bytes'] / 2**20:.1f} MiB on disk "
            f"({b['changelog_bytes_per_record']:.0f} B/record)"
            if "changelog_disk_bytes" in b
            else ""
        )
    )
    click.echo(
        f"(c) restore: {r['bulk_keys']} keys in {r['bulk_seconds']:.2f} s by the bulk restore "
        f"({r['keys_per_s_bulk'] or 0:.0f} keys/s), then {r['faust_recovery_seconds'] or 0:.1f} "
        f"s of Faust's recovery; start→marker {r['start_to_marker_s']:.1f} s vs "
        f"{b['start_to_first_output_s']:.1f} s for an empty table "
        f"({r.get('keys_per_s_marker') or 0:.0f} keys/s net); "
        f"peak RSS {r['peak_rss_mib']:.0f} MiB"
    )
    for func, own, incl in r.get("profile_top_self", []):
        click.echo(f"    {own:5.1f} % self  {incl:5.1f} % incl  {func}")
    report = {
        "command": "python -m bench.state_size " + " ".join(sys.argv[1:]),
        "bytes_per_customer": a,
        "worker": b,
        "machine": machine(),
    }
    (work / "results.json").write_text(json.dumps(report, indent=2))
    if results:
        results.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")


if __name__ == "__main__":
    main()
