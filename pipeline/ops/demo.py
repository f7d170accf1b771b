"""`tower demo`: local Kafka, topics, a worker, simulated agents for ~30 s, and a summary.

Everything the demo starts it also stops, at the end or on Ctrl-C or SIGTERM (with `--keep`,
the worker and its pages stay up until then). The summary is computed by pure functions
(`tally`, `summary_lines`) from the audit records the demo reads back, so what it says is
what the tower recorded, and it can be tested without a broker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from confluent_kafka import TopicPartition

from pipeline.client import Preflight, TowerClient, TowerError
from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.contracts.partitioning import JAVA_PARTITIONER
from pipeline.core.decision import EMITTING
from pipeline.core.policy import Policy
from pipeline.core.policy_document import PolicyError, load_policy_file
from pipeline.core.replay import NOT_DECISIONS
from pipeline.kafka import clients
from pipeline.kafka.schema_registry import lookup_for
from pipeline.kafka.topics import create_topics, delete_topics
from pipeline.ops.local_kafka import LocalKafka, LocalKafkaError
from pipeline.ops.outcome_world import Effect, OutcomeWorld
from pipeline.ops.report_commands import impact_rows, write_html
from pipeline.ops.simulator import MALFORMED, ShowcaseSimulator
from pipeline.settings import Settings, TopicNames
from pipeline.web.report_html import text_table

DEMO_APP_ID = "journey-tower-demo"
#: The demo works on its own topics, so it never touches a real deployment's data.
DEMO_TOPICS = TopicNames(**{f: f"demo-{v}" for f, v in TopicNames().__dict__.items()})
#: The checkout the demo runs from: its worker must run the same code, whatever the cwd.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
#: Every rule on, with values that make each one fire in a 30 s run of the showcase traffic.
SHOWCASE_POLICY = SOURCE_ROOT / "deploy" / "policy.showcase.yaml"

#: The truth of the demo's closed loop (`_measure_impact`): winback messages lift purchases
#: from 20 % to 30 %; upsell offers drive customers to unsubscribe (3 % -> 12 %).
IMPACT_EFFECTS = (
    Effect("winback-bot", purchase_if_received=0.30, purchase_otherwise=0.20),
    Effect(
        "upsell-bot",
        category="sales",
        action="offer",
        purchase_if_received=0.05,
        purchase_otherwise=0.05,
        unsubscribe_if_received=0.12,
        unsubscribe_otherwise=0.03,
    ),
)
#: Campaign day of the closed loop, event time: after the showcase traffic, in UTC daytime.
IMPACT_START_MS = 1_767_340_800_000  # 2026-01-02 08:00 UTC
REPORT_PATH = Path("var/demo-report.html")

#: Summary lines wrap at this width (as `tower --help` does), so they fit a terminal.
WIDTH = 100

#: Why a proposal did not go out, by the audit's outcome/rule: (short label, what it counts).
PREVENTED: dict[str, tuple[str, str]] = {
    "duplicate": ("duplicates", "merged: one action per customer trigger"),
    "replay": ("replays", "the same record sent again (an event id already decided)"),
    "kill_switch": ("switched off", "an operator stopped the agent, action or channel"),
    "eligibility": ("expired", "past the proposal's expires_at when it arrived"),
    "escalation": ("AI during handoff", "AI answers while the customer waits for a human"),
    "consent": ("without consent", "opted out of the channel, or no opt-in for the category"),
    "service_first": ("during a case", "selling while a case is open or after a complaint"),
    "loop_prevention": ("asking the known", "asked for what a signal already told us"),
    "consistency_ledger": ("contradictions", "would contradict what the customer was told"),
    "offer_arbitration": ("competing offers", "the customer already holds an offer"),
    "quiet_hours": ("in quiet hours", "dropped in the customer's local night"),
    "frequency_cap": ("over a cap", "more contacts than a frequency cap allows"),
    "banned_phrases": ("banned phrases", "content with a banned phrase"),
    "max_length": ("too long", "content over the channel's length limit"),
    "control_group": ("control group", "withheld to measure impact: the global control group"),
    "holdout": ("holdouts", "withheld to measure impact: the customer is in an agent's holdout"),
}
#: Content transforms of actions that went out, by trace rule: (short label, what it counts).
TRANSFORMED: dict[str, tuple[str, str]] = {
    "disclosure": ("AI disclosure", "the AI disclosure text put in front"),
    "pii_redaction": ("PII redacted", "e-mail, phone, card or IBAN masked"),
    "max_length": ("shortened", "cut to the channel's length limit"),
    "banned_phrases": ("phrases removed", "a banned phrase replaced by [removed]"),
    "known_facts": ("annotated", "known facts appended instead of asked for"),
}


# --- the summary: pure functions of what the demo read back ---------------------------------


@dataclass(frozen=True)
class DemoTally:
    """What happened to the records the agents produced, one final decision per input.

    `prevented` counts proposals that did not go out, each once, under the rule that stopped
    it ("duplicate" for merges, "replay" for re-sent proposals); `transformed` counts actions
    that went out with changed content (one action may be in several rows).
    """

    records_in: int
    proposals: int = 0
    replayed_proposals: int = 0
    signals: int = 0
    replayed_signals: int = 0
    emitted: Counter[str] = field(default_factory=Counter)
    prevented: Counter[str] = field(default_factory=Counter)
    hold_merges: int = 0
    transformed: Counter[str] = field(default_factory=Counter)
    still_held: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    actions_published: int | None = None

    @property
    def actions(self) -> int:
        return sum(self.emitted.values())

    @property
    def accounted(self) -> int:
        """Inputs with a decision or a dead letter (a held proposal counts once)."""
        return self.proposals + self.signals + sum(self.dead_letters.values())


def tally(
    audits: Iterable[Mapping[str, Any]],
    dead_letters: Iterable[Mapping[str, Any]],
    records_in: int,
    action_ids: Iterable[str] | None = None,
) -> DemoTally:
    """Count final decisions from decoded audit records (and dead letters).

    A held proposal has two audit records, `held` then its final one (same decision id), so
    the final one counts; a worker's identical re-emit after a crash counts once. A replay
    shares its original's decision id, so replays are told apart by their input's position.
    """
    finals: dict[str, Mapping[str, Any]] = {}
    held: set[str] = set()
    replays: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for a in audits:
        if a.get("kind") in NOT_DECISIONS:
            continue  # a policy change or a console action, not an input of the run
        outcome = a["outcome"]
        if outcome == "held":
            held.add(a["decision_id"])
        elif outcome == "duplicate":
            where = (a["source_topic"], a["source_partition"], a["source_offset"])
            replays[(a["decision_id"], *where)] = a
        else:
            finals[a["decision_id"]] = a
    counts: Counter[str] = Counter()
    emitted: Counter[str] = Counter()
    prevented: Counter[str] = Counter()
    transformed: Counter[str] = Counter()
    for a in replays.values():
        if a["kind"] == "proposal":
            counts["replayed_proposals"] += 1
            prevented["replay"] += 1
        else:
            counts["replayed_signals"] += 1
    for a in finals.values():
        if a["kind"] != "proposal":
            counts["signals"] += 1
            continue
        counts["proposals"] += 1
        outcome = a["outcome"]
        if outcome in EMITTING:
            emitted[outcome] += 1
            for step in a.get("trace") or ():
                if step["verdict"] == "transform":
                    transformed[step["rule"]] += 1
        elif outcome == "merged":
            prevented["duplicate"] += 1
            counts["hold_merges"] += a["rule"] == "hold_window"
        else:
            prevented[a["rule"] or outcome] += 1
    still_held = len(held - finals.keys())
    return DemoTally(
        records_in=records_in,
        proposals=counts["proposals"] + counts["replayed_proposals"] + still_held,
        replayed_proposals=counts["replayed_proposals"],
        signals=counts["signals"] + counts["replayed_signals"],
        replayed_signals=counts["replayed_signals"],
        emitted=emitted,
        prevented=prevented,
        hold_merges=counts["hold_merges"],
        transformed=transformed,
        still_held=still_held,
        dead_letters=Counter(d["reason"] for d in dead_letters),
        actions_published=None if action_ids is None else len(set(action_ids)),
    )


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(n: int, word: str) -> str:
    return f"{_n(n)} {word}{'' if n == 1 else 's'}"


def _replays(n: int) -> str:
    return f" ({_n(n)} replayed)" if n else ""


def summary_lines(t: DemoTally, approved_topic: str = "approved-actions") -> list[str]:
    """The summary a newcomer reads: before and after, what was prevented and changed, by
    kind, and whether the numbers add up. Every number counts records or decisions."""
    dead = sum(t.dead_letters.values())
    inputs = [
        _plural(t.proposals, "proposal") + _replays(t.replayed_proposals),
        _plural(t.signals, "signal") + _replays(t.replayed_signals),
    ]
    if dead:
        inputs.append(f"{_n(dead)} malformed")
    lines = [f"  {_plural(t.records_in, 'record')} from agents: {', '.join(inputs)}"]
    before, after = _n(t.proposals), _n(t.actions)
    width = max(len(before), len(after))
    lines += [
        "",
        f"  without the tower  {before:>{width}} messages: every proposal sent as proposed",
        f"  with the tower     {after:>{width}} actions: {_actions_detail(t.emitted)}",
        "",
    ]
    prevented = []
    for key, n in sorted(t.prevented.items(), key=lambda kv: (-kv[1], kv[0])):
        label, what = PREVENTED.get(key, (key, f"suppressed by {key}"))
        if key == "duplicate" and t.hold_merges:
            what = f"{what} ({_n(t.hold_merges)} in hold windows)"
        prevented.append((n, label, what))
    changed = [
        (n, *TRANSFORMED.get(rule, (rule, f"changed by {rule}")))
        for rule, n in sorted(t.transformed.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    rows = prevented + changed
    num_w = max((len(_n(n)) for n, _, _ in rows), default=1)
    label_w = max((len(label) for _, label, _ in rows), default=1)

    def row(n: int, label: str, what: str) -> str:
        return f"    {_n(n):>{num_w}}  {label:<{label_w}}  {what}"

    total = sum(t.prevented.values())
    lines.append(
        f"  prevented {_plural(total, 'proposal')}, each counted once, by the rule that stopped it:"
        if total
        else "  prevented nothing: every proposal went out"
    )
    lines += [row(*r) for r in prevented]
    if t.still_held:
        lines.append(
            f"  still held: {_plural(t.still_held, 'proposal')} waiting for their hold "
            "window's deadline when reading stopped"
        )
    if changed:
        lines.append(
            f"  changed on the way out, {_n(sum(t.transformed.values()))} times "
            "(one action can be changed more than once):"
        )
        lines += [row(*r) for r in changed]
    if dead:
        reasons = ", ".join(f"{r} {_n(n)}" for r, n in sorted(t.dead_letters.items()))
        lines.append(f"  dead-lettered {_plural(dead, 'malformed record')}, by reason:")
        lines += textwrap.wrap(reasons, WIDTH, initial_indent="    ", subsequent_indent="    ")
    lines += ["", *_reconciliation(t, dead, approved_topic)]
    return [part for line in lines for part in _fit(line)]


def _fit(line: str) -> list[str]:
    """A line wrapped at WIDTH, continued two spaces deeper than it starts."""
    if len(line) <= WIDTH:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, WIDTH, subsequent_indent=indent)


def _actions_detail(emitted: Counter[str]) -> str:
    parts = [f"{_n(emitted['approved'])} approved"]
    if emitted["deferred"]:
        parts.append(f"{_n(emitted['deferred'])} deferred to the morning")
    if emitted["escalated"]:
        parts.append(f"{_n(emitted['escalated'])} routed to a human")
    return ", ".join(parts)


def _reconciliation(t: DemoTally, dead: int, approved_topic: str) -> list[str]:
    """Do the numbers add up: every record decided, every audited action published?"""
    decided = t.accounted == t.records_in
    published = t.actions_published is None or t.actions_published == t.actions
    pad = " " * len("  reconciles: ")
    lines = textwrap.wrap(
        f"  reconciles: {'yes' if decided and published else 'NO'}, "
        f"{_plural(t.records_in, 'record')} in, decided {_plural(t.proposals, 'proposal')} + "
        f"{_plural(t.signals, 'signal')} + {_plural(dead, 'dead letter')}",
        WIDTH,
        subsequent_indent=pad,
    )
    missing = t.records_in - t.accounted
    if missing > 0:
        lines.append(f"{pad}{_n(missing)} not decided within the wait")
    elif missing < 0:
        lines.append(f"{pad}{_n(-missing)} decided that the demo did not send")
    if t.actions_published is not None:
        lines.append(
            f"{pad}{_plural(t.actions, 'action')} audited, {_n(t.actions_published)} on "
            f"{approved_topic}{'' if published else ' (they should be equal)'}"
        )
    return lines


def pick_customer(audits: Iterable[Mapping[str, Any]]) -> tuple[str, list[str]] | None:
    """The customer whose decisions show the most different outcomes and rules, with them:
    the one to open on the customer page."""
    seen: dict[str, set[str]] = {}
    count: Counter[str] = Counter()
    for a in audits:
        if a.get("kind") in NOT_DECISIONS or a["outcome"] in ("held", "recorded"):
            continue
        label = f"{a['outcome']}/{a['rule']}" if a.get("rule") else a["outcome"]
        seen.setdefault(a["customer_id"], set()).add(label)
        count[a["customer_id"]] += 1
    if not seen:
        return None
    best = min(seen, key=lambda c: (-len(seen[c]), -count[c], c))
    return best, sorted(seen[best])


# --- the run ---------------------------------------------------------------------------------


def _reset_demo_topics(settings: Settings) -> None:
    """A fresh demo every time: drop the demo's topics and its changelog."""
    delete_topics(settings)
    admin = clients.admin(settings)
    internal = [t for t in admin.list_topics(timeout=10).topics if t.startswith(DEMO_APP_ID)]
    if internal:
        for fut in admin.delete_topics(internal, operation_timeout=30).values():
            fut.result()
    time.sleep(1.0)  # deletion is asynchronous in the controller


def _worker_settings(settings: Settings, policy_file: Path) -> Settings:
    """The demo's worker: under the demo's policy, with the web server as a local one (no
    tokens, no TLS, its own URL), which is how the demo reads it."""
    return replace(
        settings,
        policy_file=policy_file.resolve(),
        web_tokens_file=None,
        web_open_metrics=False,
        web_tls_cert=None,
        web_tls_key=None,
        web_peers="",
        web_peer_key_file=None,
        web_url="",
    )


def _start_worker(settings: Settings, policy_file: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The worker runs this checkout's code (PYTHONPATH) with the demo's settings, those of a
    secured local broker included."""
    env = {**os.environ, **_worker_settings(settings, policy_file).to_env()}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.ops.cli", "worker", "--loglevel", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops the worker
    )


def _start_console(
    settings: Settings, policy_file: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """`tower console` on the demo's topics, local like the worker's pages (no tokens), with
    a fresh read model (the demo's topics are new every run)."""
    db = settings.data_dir.parent / "demo-console" / "console.duckdb"
    shutil.rmtree(db.parent, ignore_errors=True)
    console = replace(_worker_settings(settings, policy_file), console_db=db)
    env = {**os.environ, **console.to_env()}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.ops.cli", "console"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _log_tail(log_path: Path, lines: int = 20) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float, what: str = "worker"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(
                f"the {what} exited early; its log ends with:\n{_log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise click.ClickException(f"the {what} did not answer on {url} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _produce(
    settings: Settings, sim: ShowcaseSimulator, seconds: float, rate: int, malformed: int
) -> int:
    """Send the agents' records at `rate` per second; return how many were sent.

    The producer is closed before returning, so no client outlives the broker."""
    producer = clients.producer(
        settings, **JAVA_PARTITIONER, **{"linger.ms": 5, "logger": clients.QUIET}
    )
    produced = 0
    total = int(seconds * rate)
    bad_every = max(1, total // max(1, malformed)) if malformed else 0
    records = list(sim.opening())
    started = time.monotonic()
    try:
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
        if producer.flush(30):
            raise click.ClickException("the broker did not take every record within 30 s")
    finally:
        close = getattr(producer, "close", None)  # older confluent-kafka: closed when dropped
        if close is not None:
            close()
    return produced


def _send(settings: Settings, events: Iterable[AgentEvent], label: str) -> int:
    """Produce `events` as fast as the broker takes them; return how many."""
    events = list(events)
    producer = clients.producer(
        settings, **JAVA_PARTITIONER, **{"linger.ms": 5, "logger": clients.QUIET}
    )
    try:
        with click.progressbar(events, label=f"{label:<23}") as bar:
            for event in bar:
                value = encode_event(event)
                producer.produce(
                    settings.topics.events, key=event.customer_id.encode(), value=value
                )
                producer.poll(0)
        if producer.flush(30):
            raise click.ClickException("the broker did not take every record within 30 s")
    finally:
        close = getattr(producer, "close", None)
        if close is not None:
            close()
    return len(events)


def _measure_impact(
    settings: Settings, policy: Policy, policy_file: Path, customers: int, produced: int
) -> None:
    """A closed loop whose truth is known (IMPACT_EFFECTS): the agents' campaign, the
    customers' answers to what they received, then `tower report` over the audit topic."""
    echo = click.echo
    ex = policy.experiments
    echo()
    echo(click.style("Proof of impact: a campaign whose true effect is known", bold=True))
    if not ex.armed:
        echo("  skipped: the policy has no experiments: block (control_group, holdouts)")
        return
    holdouts = ", ".join(f"{a} {s:.0%}" for a, s in ex.holdouts.items())
    echo(
        f"  control group {ex.control_group.share:.0%} of customers "
        f"({', '.join(sorted(ex.control_group.categories))}); holdouts: {holdouts or 'none'}"
    )
    for e in IMPACT_EFFECTS:
        echo(
            f"  truth: {e.agent} received -> purchase {e.purchase_if_received:.0%}, unsubscribe "
            f"{e.unsubscribe_if_received:.0%}; not received -> {e.purchase_otherwise:.0%}, "
            f"{e.unsubscribe_otherwise:.0%}"
        )
    world = OutcomeWorld(IMPACT_EFFECTS, customers, IMPACT_START_MS, prefix="impact-")
    produced += _send(settings, world.opening(), "campaign")
    out = _read_outputs(settings, produced, timeout=90)
    received = {
        (a["customer_id"], a["agent"]): True
        for a in out.audits
        if a["kind"] == "proposal" and a["outcome"] in EMITTING
    }
    produced += _send(settings, world.answers(received), "customers answering")
    _read_outputs(settings, produced, timeout=90)
    notes: list[str] = []
    rows, source = impact_rows(settings, [policy_file], notes.append)
    echo(f"  tower report: {source}")
    for line in text_table(rows):
        echo(f"  {line.rstrip()}")
    for note in notes:
        echo(f"  note: {note}")
    write_html(REPORT_PATH, rows, source, notes)
    echo(f"  the same as a page with charts: {REPORT_PATH} (tower report --html FILE)")


@dataclass
class _Outputs:
    audits: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    action_ids: list[str] = field(default_factory=list)


def _read_outputs(settings: Settings, expected: int, timeout: float) -> _Outputs:
    """Read the demo's outputs until every input has its final decision (or time runs out),
    then on to the end of every output partition, so that actions written together with the
    last audit records are counted too.

    An input counts once it has an audit record citing it or a dead letter; a held proposal
    also needs its final record, which comes when its hold is released."""
    t = settings.topics
    roles = {t.approved: "approved_action", t.audit: "audit_record", t.deadletter: "dead_letter"}
    partitions = [TopicPartition(topic, p) for topic in roles for p in range(settings.partitions)]
    consumer = clients.reader(settings, "demo-summary", **{"auto.offset.reset": "earliest"})
    out = _Outputs()
    covered: set[tuple[int, int]] = set()
    held: set[str] = set()
    final: set[str] = set()

    def read(batch: list[Any]) -> None:
        for msg in batch:
            if msg.error():
                continue
            name = roles[msg.topic()]
            record = decode_record(name, msg.value(), lookup_for(settings))
            if name == "approved_action":
                out.action_ids.append(record["action_id"])
                continue
            if name == "dead_letter":
                out.dead_letters.append(record)
            else:
                out.audits.append(record)
                (held if record["outcome"] == "held" else final).add(record["decision_id"])
            if record["source_topic"] == t.events:
                covered.add((record["source_partition"], record["source_offset"]))

    try:
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        with click.progressbar(length=expected, label="waiting for decisions  ") as bar:
            while time.monotonic() < deadline:
                before = len(covered)
                read(consumer.consume(1000, 0.5))
                bar.update(len(covered) - before)
                if len(covered) >= expected and held <= final:
                    break
        # The end of every partition, twice in a row: nothing written with the last decisions
        # is still on its way.
        caught_up = 0
        drain_until = time.monotonic() + 10
        while caught_up < 2 and time.monotonic() < drain_until:
            ends = [consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions]
            positions = [max(p.offset, 0) for p in consumer.position(partitions)]
            if all(pos >= end for pos, end in zip(positions, ends, strict=True)):
                caught_up += 1
                time.sleep(0.3)
            else:
                caught_up = 0
                read(consumer.consume(1000, 0.2))
    finally:
        consumer.close()
    return out


def _print_summary(
    out: _Outputs, produced: int, settings: Settings, policy: Policy, policy_file: Path
) -> tuple[str, list[str]] | None:
    t = tally(out.audits, out.dead_letters, produced, out.action_ids)
    echo = click.echo
    echo()
    echo(click.style("Journey Tower demo: what the tower did", bold=True))
    echo(f"  policy {policy.policy_version} from {_shown(policy_file)}")
    echo()
    for line in summary_lines(t, settings.topics.approved):
        echo(line)
    picked = pick_customer(out.audits)
    if picked is not None:
        customer, labels = picked
        echo(f"\n  a customer to look at: {customer}, {len(labels)} kinds of decision:")
        for line in textwrap.wrap(
            ", ".join(labels), WIDTH, initial_indent="    ", subsequent_indent="    "
        ):
            echo(line)
    return picked


def agent_view_lines(ctx: Mapping[str, Any], advice: Preflight, what: str) -> list[str]:
    """What one agent sees through the API: the context it grounds on, then a preflight."""

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")

    consents = [
        f"{c['channel']}:{c['purpose']} {'granted' if c['granted'] else 'withdrawn'}"
        for c in ctx["consents"]
    ]
    caps = [
        f"{c['cap']}{'' if c['value'] is None else ' ' + c['value']} {c['used']}/{c['limit']}"
        for c in ctx["caps"]
        if c["used"]
    ]
    told = [f"{f['fact']}={f['value']} ({f['agent']})" for f in ctx["facts_told"]]
    qh = ctx["quiet_hours"]
    quiet = f"quiet until {iso(qh['next_allowed_send'])}" if qh["quiet_now"] else "not quiet now"
    human = ctx["escalation"]["needs_human"]
    verdict = advice.outcome if advice.rule is None else f"{advice.outcome} by {advice.rule}"
    lines = [
        f"  one agent's view of {ctx['customer_id']} (GET /api/v1/customers/.../context):",
        f"    consents     {', '.join(consents) or 'none'}",
        f"    caps used    {', '.join(caps) or 'none'}",
        f"    open cases   {', '.join(c['case_id'] for c in ctx['open_cases']) or 'none'}",
        f"    facts told   {', '.join(told) or 'none'}",
        f"    time zone    {ctx['timezone']}, {quiet} (as of {iso(ctx['as_of'])})",
        f"    a human owns the conversation: {'yes' if human else 'no'}",
        f"  preflight of {what} (POST /api/v1/preflight, advisory: nothing stored):",
        f"    would be {verdict}: {advice.reason}",
    ]
    return [piece for line in lines for piece in _fit(line)]


def _show_agent_view(settings: Settings, customer: str, at: int) -> None:
    """Ask the running worker as an agent would, through the client."""
    url = f"http://{settings.web_host}:{settings.web_port}"
    what = "a marketing email from winback-bot"
    try:
        with TowerClient(settings.bootstrap, url, topics=settings.topics) as tower:
            ctx = tower.context(customer, at=at)
            advice = tower.preflight(
                customer,
                agent="winback-bot",
                department="marketing",
                channel="email",
                action="message",
                category="marketing",
                content="We miss you: 10% off your next order.",
                occurred_at=at,
            )
    except TowerError as exc:
        click.echo(f"\n  the agents' API did not answer: {exc}")
        return
    click.echo()
    for line in agent_view_lines(ctx, advice, what):
        click.echo(line)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _keep_running(
    proc: subprocess.Popen[bytes],
    settings: Settings,
    customer: str | None,
    log_path: Path,
    stops_kafka: bool,
    console: tuple[str, Path] | None = None,
) -> None:
    """Leave the worker and its pages (and the console) up until Ctrl-C (or until the
    worker exits)."""
    base = f"http://{settings.web_host}:{settings.web_port}"
    click.echo("\nThe worker keeps running (--keep):")
    if console is not None:
        click.echo(f"  console         {console[0]}/   (log: {console[1]})")
    click.echo(f"  live decisions  {base}/")
    if customer is not None:
        click.echo(f"  a customer      {base}/customers/{customer}")
    click.echo(f"  metrics         {base}/metrics")
    click.echo(f"  worker log      {log_path}")
    t = settings.topics
    click.echo(
        f"  an agent        TOWER_BOOTSTRAP={settings.bootstrap} TOWER_URL={base} "
        f"TOWER_TOPIC_EVENTS={t.events} TOWER_TOPIC_AUDIT={t.audit} "
        f"python examples/grounded_agent.py --customer {customer or 'cust-00042'}"
    )
    what = "the worker and Kafka" if stops_kafka else "the worker"
    click.echo(f"Press Ctrl-C to stop {what}.")
    while proc.poll() is None:
        time.sleep(0.5)
    raise click.ClickException(
        f"the worker exited (code {proc.returncode}); its log ends with:\n{_log_tail(log_path)}"
    )


#: the signals that stop the demo and everything it started
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--seconds", default=30.0, show_default=True, help="How long the agents produce.")
@click.option("--rate", default=150, show_default=True, help="Records per second from agents.")
@click.option("--customers", default=300, show_default=True, help="Simulated customers.")
@click.option("--malformed", default=12, show_default=True, help="Malformed records to mix in.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Policy YAML for the demo's worker [default: deploy/policy.showcase.yaml, every rule on].",
)
@click.option(
    "--impact-customers",
    default=2000,
    show_default=True,
    help="Customers of the closed-loop campaign measured by tower report (0 skips it).",
)
@click.option(
    "--keep", is_flag=True, help="Leave the worker and its pages running until Ctrl-C (or SIGTERM)."
)
@click.option("--keep-kafka", is_flag=True, help="Leave the broker running after the demo.")
def demo_command(
    seconds: float,
    rate: int,
    customers: int,
    malformed: int,
    policy_file: Path | None,
    impact_customers: int,
    keep: bool,
    keep_kafka: bool,
) -> None:
    """Run the whole tower locally with simulated marketing, sales and service bots.

    Starts a local Kafka broker (fetching its jars once), recreates the demo topics, starts a
    worker under the showcase policy (every rule on), lets the bots react to the same customer
    triggers for --seconds (with consent changes, cases, complaints, purchases, replays and
    malformed records), then prints what the tower prevented and changed, counted from the
    audit records. Then a campaign whose true effect is known runs under the policy's
    control group and holdouts, and `tower report` shows what each agent caused (also as
    var/demo-report.html). With --keep the worker's pages stay up until Ctrl-C.
    """
    policy_file = policy_file or SHOWCASE_POLICY
    if not policy_file.is_file():
        raise click.ClickException(f"{policy_file} is missing; pass --policy FILE")
    try:
        policy = load_policy_file(policy_file)
    except PolicyError as exc:
        raise click.ClickException(f"the policy was refused:\n{exc}") from exc
    interrupted = False
    with ExitStack() as stack:
        for signum in STOP_SIGNALS:
            stack.callback(signal.signal, signum, signal.getsignal(signum))
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: everything started
        try:
            _run(
                stack,
                policy,
                policy_file,
                seconds,
                rate,
                customers,
                malformed,
                impact_customers,
                keep,
                keep_kafka,
            )
        except KeyboardInterrupt:
            for signum in STOP_SIGNALS:  # one Ctrl-C is enough: finish stopping
                signal.signal(signum, signal.SIG_IGN)
            interrupted = not keep
            click.echo("\nStopping what the demo started ...")
    if interrupted:
        raise click.exceptions.Exit(130)


def _run(
    stack: ExitStack,
    policy: Policy,
    policy_file: Path,
    seconds: float,
    rate: int,
    customers: int,
    malformed: int,
    impact_customers: int,
    keep: bool,
    keep_kafka: bool,
) -> None:
    """Start, produce, read, summarise; every start registers its stop on `stack`."""
    base = Settings.from_env()
    broker = LocalKafka.from_settings(base, out=sys.stdout)
    already = broker.status().running
    try:
        broker.up()
    except LocalKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    stops_kafka = not already and not keep_kafka
    if stops_kafka:
        stack.callback(broker.down)
    settings = Settings.from_env(
        app_id=DEMO_APP_ID,
        data_dir=Path("var/demo"),
        bootstrap=broker.bootstrap,
        topics=DEMO_TOPICS,
    )
    if broker.secure:  # `tower kafka up --secure` made this broker: connect as the roles do
        broker.grant_roles(DEMO_TOPICS, DEMO_APP_ID)
        settings = broker.material.settings(broker.bootstrap, "tower", settings)
        click.echo("The broker is secured: the demo connects as role `tower` over SASL_SSL")
    click.echo("Preparing fresh demo topics ...")
    _reset_demo_topics(settings)
    for line in create_topics(settings).lines():
        click.echo(f"  {line}")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir.parent / "demo-worker.log"
    proc = _start_worker(settings, policy_file, log_path)
    stack.callback(_stop, proc)
    click.echo(f"Worker starting under policy {policy.policy_version} (log: {log_path}) ...")
    _wait_http(f"http://{settings.web_host}:{settings.web_port}/healthz", proc, log_path, 60)

    sim = ShowcaseSimulator(customers=customers, seed=int(time.time()))
    produced = _produce(settings, sim, seconds, rate, malformed)
    out = _read_outputs(settings, produced, timeout=90)
    picked = _print_summary(out, produced, settings, policy, policy_file)
    if picked is not None:
        _show_agent_view(settings, picked[0], max(a["decided_at"] for a in out.audits))
    if impact_customers:
        _measure_impact(settings, policy, policy_file, impact_customers, produced)
    t = settings.topics
    if keep:
        console_log = settings.data_dir.parent / "demo-console.log"
        console = _start_console(settings, policy_file, console_log)
        stack.callback(_stop, console)
        console_url = f"http://{settings.web_host}:{settings.console_port}"
        _wait_http(f"{console_url}/healthz", console, console_log, 60, "console")
        _keep_running(
            proc,
            settings,
            picked[0] if picked else None,
            log_path,
            stops_kafka,
            console=(console_url, console_log),
        )
    click.echo("\nWhere to look:")
    click.echo(f"  topics     {t.approved}, {t.audit}, {t.deadletter} on {settings.bootstrap}")
    click.echo(
        "  pages      tower demo --keep   (leaves the worker's pages and the console up "
        "until Ctrl-C)"
    )
    if not stops_kafka:
        click.echo(f"  Kafka      still running on {settings.bootstrap} (tower kafka down)")
