"""Latency of the agents' API (`GET /api/v1/customers/{id}/context`, `POST /api/v1/preflight`)
on a worker that is deciding events meanwhile, and the event throughput it keeps.

Per runtime, one worker on a private broker:

  1. its event rate alone, on a backlog of --events records (as bench.throughput);
  2. events produced at half that rate for --seconds, no API requests;
  3. the same rate and seconds, plus --rps API requests/s, half context and half preflight,
     for customers of the backlog (preflight bodies: simulator proposals, fresh event ids).

Requests follow an open-loop schedule: request i leaves at start + i / rps whatever the
earlier ones did, and its latency counts from that scheduled time, so a stalled server
cannot hide its queue (coordinated omission). With --in-flight requests open, the next one
is dropped (and counted). Decided events/s: deltas of the worker's `tower_decisions_total`;
lag: the sum of /healthz "lag", sampled every second.

    python -m bench.agent_api --runtime faust,transactional
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import click

from bench import common
from pipeline.contracts.codec import encode_event
from pipeline.kafka.topics import create_topics
from pipeline.ops.simulator import AgentSimulator, SimRecord

#: p99 targets (ms) per endpoint
TARGETS_MS = {"context": 20.0, "preflight": 30.0}
#: (endpoint, method, path, body)
Request = tuple[str, str, str, bytes | None]
#: what the sampling loop tolerates from a busy worker: the sample is skipped
SKIP = (aiohttp.ClientError, TimeoutError, KeyError, ValueError)


@dataclass
class Phase:
    produced: int
    seconds: float
    decided: float  # tower_decisions_total delta while producing
    max_lag: int

    @property
    def rate(self) -> float:
        return self.decided / self.seconds if self.seconds else 0.0


@dataclass
class Load:
    """Per answer (endpoint, status, ms, late ms); `late` is how long after its scheduled
    time the harness sent the request (its own delay, included in ms). Drops per endpoint;
    the first answer per endpoint and non-200 status."""

    answers: list[tuple[str, str, float, float]] = field(default_factory=list)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: dict[str, str] = field(default_factory=dict)

    def summary(self, endpoint: str, target: float) -> dict[str, Any]:
        mine = [a for a in self.answers if a[0] == endpoint]
        p = common.percentiles([a[2] for a in mine])
        errors = dict(collections.Counter(a[1] for a in mine if a[1] != "200"))
        met = bool(p) and p["p99"] < target and not errors and not self.dropped[endpoint]
        late = common.percentiles([a[3] for a in mine]).get("p99")
        out = {"n": len(mine), "dropped": self.dropped[endpoint], "errors": errors, **p}
        return {**out, "late_p99": late, "target_p99_ms": target, "met": met}


async def _decisions(s: aiohttp.ClientSession) -> float:
    async with s.get("/metrics") as r:
        lines = (await r.text()).splitlines()
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("tower_decisions_total"))


async def _health(s: aiohttp.ClientSession) -> tuple[dict[str, Any], int]:
    async with s.get("/healthz") as r:
        health = await r.json()
    return health, sum(health["lag"].values())


async def _settle(s: aiohttp.ClientSession, partitions: int, timeout: float = 180) -> None:
    """Until the worker owns every partition, has no lag and its decision count stands still."""
    deadline, last = time.monotonic() + timeout, -1.0
    while time.monotonic() < deadline:
        with contextlib.suppress(*SKIP):
            (health, lag), count = await _health(s), await _decisions(s)
            owns_all = health["ready"] and len(health["partitions"]) == partitions
            if owns_all and not lag and count == last:
                return
            last = count
        await asyncio.sleep(1)
    raise click.ClickException(f"the worker did not settle within {timeout:.0f} s")


async def _send(s: aiohttp.ClientSession, load: Load, due: float, req: Request) -> None:
    endpoint, method, path, body = req
    loop = asyncio.get_running_loop()
    late = loop.time() - due
    headers = {"Content-Type": "application/json"} if body else None
    try:
        async with s.request(method, path, data=body, headers=headers) as r:
            text, status = await r.text(), str(r.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        text, status = repr(exc), type(exc).__name__
    load.answers.append((endpoint, status, 1000 * (loop.time() - due), 1000 * late))
    if status != "200":
        load.samples.setdefault(f"{endpoint} {status}", text[:300])


async def _fire(s: aiohttp.ClientSession, requests: list[Request], rps: float, cap: int) -> Load:
    """Open loop: request i at start + i / rps; dropped while `cap` requests are in flight."""
    load, pending = Load(), set[asyncio.Task[None]]()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, req in enumerate(requests):
        due = start + i / rps
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        if len(pending) >= cap:
            load.dropped[req[0]] += 1
            continue
        task = asyncio.create_task(_send(s, load, due, req))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return load


async def _phase(
    s: aiohttp.ClientSession,
    produce: tuple[str, str, list[tuple[bytes, bytes]], float],
    seconds: float,
    label: str,
    api: tuple[list[Request], float, int] | None = None,
) -> tuple[Phase, Load]:
    """Produce at a fixed rate (in a thread), fire `api` requests meanwhile, sample the lag."""
    before, start = await _decisions(s), time.monotonic()
    producing = asyncio.create_task(asyncio.to_thread(common.produce_paced, *produce))
    firing = asyncio.create_task(_fire(s, *api)) if api else None
    lags = []
    with click.progressbar(length=int(seconds), label=f"{label:<40}") as bar:
        while not producing.done():
            with contextlib.suppress(*SKIP):
                lags.append((await _health(s))[1])
            elapsed = time.monotonic() - start
            bar.update(min(int(seconds), int(elapsed)) - bar.pos)
            await asyncio.wait({producing}, timeout=1 - elapsed % 1)
    decided = await _decisions(s) - before
    load = await firing if firing else Load()
    return Phase(len(produce[2]), producing.result(), decided, max(lags, default=0)), load


def _requests(backlog: list[SimRecord], paced: list[SimRecord], n: int, tag: str) -> list[Request]:
    """Alternately context and preflight, for customers of the backlog; preflight bodies are
    the paced records' proposals with fresh event ids (JSON, as produced to agent-events)."""
    known = {r.event.customer_id for r in backlog if r.event}
    proposals = [r.event for r in paced if r.event and r.event.proposal]
    proposals = [e for e in proposals if e.customer_id in known]
    customers, rng = sorted(known), random.Random(5)
    out: list[Request] = []
    for i in range(n):
        if i % 2 == 0:
            path = f"/api/v1/customers/{rng.choice(customers)}/context"
            out.append(("context", "GET", path, None))
        else:
            event = replace(proposals[(i // 2) % len(proposals)], event_id=f"pf-{tag}-{i}")
            out.append(("preflight", "POST", "/api/v1/preflight", encode_event(event, "json")))
    return out


def _run(runtime: str, opts: dict[str, Any], bootstrap: str, work: Path, tag: str) -> dict:
    partitions, seconds, rps, cap = (opts[k] for k in ("partitions", "seconds", "rps", "in_flight"))
    settings = common.tower_settings(bootstrap, f"{tag}-{runtime}", partitions, work / runtime)
    topic, log = settings.topics.events, work / f"{runtime}.log"
    sim = AgentSimulator(customers=opts["customers"], seed=3)
    backlog = sim.records(opts["events"])
    create_topics(settings).raise_for_problems()
    common.produce_all(bootstrap, topic, [(r.key, r.value) for r in backlog])
    t0 = time.time()
    proc, port = common.start_tower(settings, common.FULL_POLICY_FILE, log, runtime=runtime)
    try:
        w = common.watch(
            bootstrap, settings.topics.audit, partitions, len(backlog), 600, runtime, t0
        )
        if w.records < len(backlog) or not w.span:
            raise click.ClickException(f"{runtime}: {w.records} of {len(backlog)} decided; {log}")
        alone = w.records / w.span
        rate = alone / 2
        n = int(rate * seconds)
        paced: list[SimRecord] = []
        while len(paced) < 2 * n:
            paced.extend(sim.step())
        quiet_in, api_in = ([(r.key, r.value) for r in part] for part in (paced[:n], paced[n:]))
        requests = _requests(backlog, paced[n:], int(rps * seconds), f"{tag}-{runtime}")

        async def phases() -> tuple[Phase, Phase, Load]:
            async with aiohttp.ClientSession(
                f"http://127.0.0.1:{port}",
                timeout=aiohttp.ClientTimeout(total=10),
                connector=aiohttp.TCPConnector(limit=cap + 4),  # + health and metrics
            ) as s:
                await _settle(s, partitions)
                for req in requests[:40]:  # warm-up (connections, first calls), not counted
                    await _send(s, Load(), asyncio.get_running_loop().time(), req)
                label = f"{runtime} @ {rate:.0f} ev/s"
                quiet, _ = await _phase(s, (bootstrap, topic, quiet_in, rate), seconds, label)
                await _settle(s, partitions)
                label, api = f"{label} + {rps:.0f} req/s", (requests, rps, cap)
                loaded, load = await _phase(
                    s, (bootstrap, topic, api_in, rate), seconds, label, api
                )
                return quiet, loaded, load

        quiet, loaded, load = asyncio.run(phases())
    finally:
        common.stop_process(proc)
    by_phase = {"quiet": quiet, "api": loaded}
    return {
        "events_per_s_alone": alone,
        "paced_rate": rate,
        "phases": {k: {**v.__dict__, "decided_per_s": v.rate} for k, v in by_phase.items()},
        "throughput_kept": loaded.rate / quiet.rate if quiet.rate else 0.0,
        "endpoints": {e: load.summary(e, target) for e, target in TARGETS_MS.items()},
        "error_samples": load.samples,
    }


def _print(report: dict[str, Any], rps: float, cap: int) -> None:
    click.echo(
        f"\nAPI latency, ms from each request's scheduled send (open loop, {rps:.0f} req/s, "
        f"<= {cap} in flight), events paced at half the worker's rate meanwhile"
    )
    click.echo(
        f"{'runtime':<15}{'endpoint':<11}{'n':>6}{'dropped':>8}{'errors':>14}{'p50':>8}"
        f"{'p95':>8}{'p99':>8}{'max':>8}{'late p99':>10}  target"
    )
    for runtime, r in report["runtimes"].items():
        for endpoint, e in r["endpoints"].items():
            errors = " ".join(f"{k}:{v}" for k, v in sorted(e["errors"].items())) or "-"
            nums = "".join(f"{e.get(k, float('nan')):>8.1f}" for k in ("p50", "p95", "p99", "max"))
            click.echo(
                f"{runtime:<15}{endpoint:<11}{e['n']:>6}{e['dropped']:>8}{errors:>14}{nums}"
                f"{e['late_p99'] or float('nan'):>10.1f}  p99 < {e['target_p99_ms']:.0f} ms: "
                + ("met" if e["met"] else "missed")
            )
    click.echo(
        f"\n{'events/s':<15}{'alone':>9}{'paced':>9}{'decided':>9}{'with API':>10}"
        f"{'kept':>7}{'max lag':>9}{'with API':>10}"
    )
    for runtime, r in report["runtimes"].items():
        q, a = r["phases"]["quiet"], r["phases"]["api"]
        click.echo(
            f"{runtime:<15}{r['events_per_s_alone']:>9.0f}{r['paced_rate']:>9.0f}"
            f"{q['decided_per_s']:>9.0f}{a['decided_per_s']:>10.0f}{r['throughput_kept']:>7.3f}"
            f"{q['max_lag']:>9}{a['max_lag']:>10}"
        )
    click.echo("kept: event throughput kept while serving the API (decided with API / without)")
    for runtime, r in report["runtimes"].items():
        for what, text in r["error_samples"].items():
            click.echo(f"  {runtime} {what}: {text}")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--runtime", "runtimes", default="faust", help="faust, transactional or both: a,b")
@click.option("--events", default=30_000, show_default=True, help="Backlog for the rate alone.")
@click.option("--customers", default=5_000, show_default=True, help="Distinct customers.")
@click.option("--partitions", default=8, show_default=True, help="Partitions of every topic.")
@click.option("--seconds", default=20.0, show_default=True, help="Duration of each paced phase.")
@click.option("--rps", default=200.0, show_default=True, help="API requests/s (half each kind).")
@click.option("--in-flight", default=64, show_default=True, help="Open requests before drops.")
@click.option("--results", type=click.Path(path_type=Path, dir_okay=False), help="Write JSON.")
@click.option("--bootstrap", help="Use this broker instead of starting one.")
@click.option("--kafka-port", default=39592, show_default=True, help="Private broker (and +1).")
def main(
    runtimes: str, results: Path | None, bootstrap: str | None, kafka_port: int, **opts: Any
) -> None:
    """Agent API latency (p50/p95/p99/max per endpoint against its target) on a worker
    deciding events at half its rate, and the event throughput it keeps meanwhile."""
    chosen = [r.strip() for r in runtimes.split(",") if r.strip()]
    if not chosen or set(chosen) - {"faust", "transactional"}:
        raise click.BadParameter(f"{runtimes!r}: faust and/or transactional", param_hint="runtime")
    work = Path(tempfile.mkdtemp(prefix="tower-bench-api-"))
    bootstrap, broker = common.start_broker(bootstrap, kafka_port, work / "kafka")
    report: dict[str, Any] = {"command": "python -m bench.agent_api " + " ".join(sys.argv[1:])}
    try:
        tag = uuid.uuid4().hex[:6]
        report["runtimes"] = {r: _run(r, opts, bootstrap, work, tag) for r in chosen}
    finally:
        if broker is not None:
            broker.down()
    _print(report, opts["rps"], opts["in_flight"])
    report.update({k: str(v) if isinstance(v, Path) else v for k, v in opts.items()})
    report["machine"] = common.machine()
    for path in (work / "results.json", results):
        if path:
            path.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")


if __name__ == "__main__":
    main()
