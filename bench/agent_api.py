"""The agents' API on one worker per runtime, in two modes.

`--mode decide`: ask and decide (`POST /api/v1/proposals`) by --agents concurrent agents,
each sending its next proposal when the last one is answered (closed loop), for --seconds:
decisions/s and p50/p99 answer times against the target (>= 1000 decisions/s, p99 < 250
ms); then the Kafka path's throughput: a backlog of --events records decided alone, and
again while the agents ask, as a ratio (Kafka-path decisions/s with the HTTP load /
without).

    python -m bench.agent_api --mode decide --runtime faust,transactional

`--mode latency` (default): latency of context and preflight on a worker that is deciding
events meanwhile, and the event throughput it keeps. Per runtime, one worker on a private
broker:

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
#: ask and decide: decisions/s per worker and p99 (ms)
DECIDE_TARGET_RATE = 1000.0
DECIDE_TARGET_P99_MS = 250.0
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


@dataclass
class Asked:
    """Ask-and-decide answers: (status, ms) each, over `seconds`."""

    answers: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples: dict[int, str] = field(default_factory=dict)
    #: the worker's CPU seconds meanwhile (user + system), None if unknown
    worker_cpu_s: float | None = None

    def summary(self) -> dict[str, Any]:
        decided = [ms for status, ms in self.answers if status == 200]
        rate = len(decided) / self.seconds if self.seconds else 0.0
        p = common.percentiles(decided)
        statuses = dict(collections.Counter(str(status) for status, _ in self.answers))
        met = rate >= DECIDE_TARGET_RATE and bool(p) and p["p99"] < DECIDE_TARGET_P99_MS
        cpu = self.worker_cpu_s
        per = 1000 * cpu / len(decided) if cpu is not None and decided else None
        return {
            "decisions_per_s": rate,
            "statuses": statuses,
            **p,
            "worker_cpu_ms_per_decision": per,
            "met": met,
        }


async def _agents(
    s: aiohttp.ClientSession,
    bodies: list[bytes],
    agents: int,
    seconds: float,
    done: asyncio.Event | None = None,
    asked: Asked | None = None,
) -> Asked:
    """`agents` closed loops, each asking with the next body until `seconds` are over (or
    `done` is set); the answers go to `asked` as they come."""
    asked, loop = asked or Asked(), asyncio.get_running_loop()
    start = loop.time()
    stop = start + seconds
    next_body = iter(bodies)
    headers = {"Content-Type": "application/json"}

    async def agent() -> None:
        for body in next_body:
            if loop.time() >= stop or (done is not None and done.is_set()):
                return
            sent = loop.time()
            try:
                async with s.post("/api/v1/proposals?wait=5", data=body, headers=headers) as r:
                    text, status = await r.text(), r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                text, status = repr(exc), 0
            asked.answers.append((status, 1000 * (loop.time() - sent)))
            if status != 200:
                asked.samples.setdefault(status, text[:300])

    await asyncio.gather(*(agent() for _ in range(agents)))
    asked.seconds = loop.time() - start
    return asked


def _proposal_bodies(sim: AgentSimulator, n: int, tag: str) -> list[bytes]:
    """`n` simulator proposals as ask-and-decide bodies (JSON), fresh event ids."""
    out: list[bytes] = []
    while len(out) < n:
        for rec in sim.step():
            if rec.event is not None and rec.event.proposal is not None:
                event = replace(rec.event, event_id=f"ad-{tag}-{len(out)}")
                out.append(encode_event(event, "json"))
    return out


def _run_decide(runtime: str, opts: dict[str, Any], bootstrap: str, work: Path, tag: str) -> dict:
    partitions, seconds, agents = opts["partitions"], opts["seconds"], opts["agents"]
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
        kafka_alone = w.records / w.span
        # enough bodies for the agents at twice the target rate
        bodies = _proposal_bodies(sim, int(2 * DECIDE_TARGET_RATE * seconds) * 2, tag + runtime)
        second = sim.records(opts["events"])

        async def phases() -> tuple[Asked, Asked, float]:
            async with aiohttp.ClientSession(
                f"http://127.0.0.1:{port}",
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(limit=agents + 4),
            ) as s:
                await _settle(s, partitions)
                await _agents(s, bodies[:200], agents, 60)  # warm-up, not counted
                half = len(bodies) // 2
                click.echo(f"{runtime}: {agents} agents ask and decide for {seconds:.0f} s")
                cpu = common.cpu_seconds(proc.pid)
                alone = await _agents(s, bodies[200:half], agents, seconds)
                after = common.cpu_seconds(proc.pid)
                if cpu is not None and after is not None:
                    alone.worker_cpu_s = after - cpu
                await _settle(s, partitions)
                # the Kafka path while agents ask: a backlog produced at once and decided
                # while the agents keep asking; its rate: records / time until the worker
                # decided them all (its decisions less the agents' answered ones)
                drained = asyncio.Event()
                records = [(r.key, r.value) for r in second]
                answered: list[Asked] = []
                before = await _decisions(s)
                started = time.monotonic()
                producing = asyncio.to_thread(common.produce_all, bootstrap, topic, records)

                async def drain() -> float:
                    await producing
                    while True:
                        with contextlib.suppress(*SKIP):
                            http = sum(len(a.answers) for a in answered)
                            if await _decisions(s) - before - http >= len(records):
                                drained.set()
                                return time.monotonic() - started
                        await asyncio.sleep(0.1)

                span = asyncio.create_task(drain())
                loaded = Asked()
                answered.append(loaded)
                await _agents(s, bodies[half:], agents, 600, drained, loaded)
                kafka_loaded = len(second) / await span
                return alone, loaded, kafka_loaded

        alone, loaded, kafka_loaded = asyncio.run(phases())
    finally:
        common.stop_process(proc)
    return {
        "kafka_alone_per_s": kafka_alone,
        "ask_and_decide": alone.summary(),
        "ask_and_decide_with_kafka_backlog": loaded.summary(),
        "kafka_with_http_per_s": kafka_loaded,
        "error_samples": {str(k): v for k, v in {**alone.samples, **loaded.samples}.items()},
    }


def _print_decide(report: dict[str, Any], agents: int) -> None:
    click.echo(
        f"\nAsk and decide, {agents} concurrent agents (closed loop), one worker; target "
        f">= {DECIDE_TARGET_RATE:.0f} decisions/s with p99 < {DECIDE_TARGET_P99_MS:.0f} ms"
    )
    click.echo(
        f"{'runtime':<15}{'phase':<22}{'dec/s':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
        "  statuses  target"
    )
    for runtime, r in report["runtimes"].items():
        for phase in ("ask_and_decide", "ask_and_decide_with_kafka_backlog"):
            a = r[phase]
            nums = "".join(f"{a.get(k, float('nan')):>8.1f}" for k in ("p50", "p95", "p99", "max"))
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(a["statuses"].items()))
            cpu = a["worker_cpu_ms_per_decision"]
            statuses += "" if cpu is None else f" (worker CPU {cpu:.2f} ms/decision)"
            label = "alone" if phase == "ask_and_decide" else "+ Kafka backlog"
            click.echo(
                f"{runtime:<15}{label:<22}{a['decisions_per_s']:>8.0f}{nums}  {statuses}  "
                + ("met" if a["met"] else "missed")
            )
    click.echo(f"\n{'Kafka path ev/s':<15}{'alone':>9}{'with HTTP':>11}{'ratio':>7}")
    for runtime, r in report["runtimes"].items():
        ratio = r["kafka_with_http_per_s"] / r["kafka_alone_per_s"] if r["kafka_alone_per_s"] else 0
        r["kafka_ratio"] = ratio
        click.echo(
            f"{runtime:<15}{r['kafka_alone_per_s']:>9.0f}{r['kafka_with_http_per_s']:>11.0f}"
            f"{ratio:>7.3f}"
        )
    for runtime, r in report["runtimes"].items():
        for what, text in r["error_samples"].items():
            click.echo(f"  {runtime} {what}: {text}")


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
@click.option(
    "--mode",
    type=click.Choice(["latency", "decide"]),
    default="latency",
    show_default=True,
    help="latency: context and preflight; decide: ask and decide by --agents agents.",
)
@click.option("--agents", default=50, show_default=True, help="decide: concurrent agents.")
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
    mode: str,
    runtimes: str,
    results: Path | None,
    bootstrap: str | None,
    kafka_port: int,
    **opts: Any,
) -> None:
    """Agent API latency (p50/p95/p99/max per endpoint against its target) on a worker
    deciding events at half its rate, and the event throughput it keeps meanwhile; or
    (--mode decide) ask-and-decide throughput and answer times, and the Kafka path's."""
    chosen = [r.strip() for r in runtimes.split(",") if r.strip()]
    if not chosen or set(chosen) - {"faust", "transactional"}:
        raise click.BadParameter(f"{runtimes!r}: faust and/or transactional", param_hint="runtime")
    work = Path(tempfile.mkdtemp(prefix="tower-bench-api-"))
    bootstrap, broker = common.start_broker(bootstrap, kafka_port, work / "kafka")
    report: dict[str, Any] = {"command": "python -m bench.agent_api " + " ".join(sys.argv[1:])}
    try:
        tag = uuid.uuid4().hex[:6]
        run = _run_decide if mode == "decide" else _run
        report["runtimes"] = {r: run(r, opts, bootstrap, work, tag) for r in chosen}
    finally:
        if broker is not None:
            broker.down()
    if mode == "decide":
        _print_decide(report, opts["agents"])
    else:
        _print(report, opts["rps"], opts["in_flight"])
    report.update({k: str(v) if isinstance(v, Path) else v for k, v in opts.items()})
    report["machine"] = common.machine()
    for path in (work / "results.json", results):
        if path:
            path.write_text(json.dumps(report, indent=2))
    click.echo(f"logs and results.json in {work}")


if __name__ == "__main__":
    main()
