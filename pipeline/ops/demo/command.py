"""`tower demo`: local Kafka, topics, a worker, simulated agents for ~30 s, and a summary.

Everything the demo starts it also stops, at the end or on Ctrl-C or SIGTERM (with `--keep`,
the worker and its pages stay up until then)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

import click

from pipeline.client import TowerClient, TowerError
from pipeline.core.policy import Policy
from pipeline.core.policy_document import PolicyError, load_policy_file
from pipeline.kafka import clients
from pipeline.kafka.topics import create_topics, delete_topics
from pipeline.ops.demo.impact import measure_impact
from pipeline.ops.demo.processes import (
    SOURCE_ROOT,
    log_tail,
    start_console,
    start_worker,
    stop,
    wait_http,
)
from pipeline.ops.demo.readback import Outputs, read_outputs
from pipeline.ops.demo.summary import WIDTH, agent_view_lines, pick_customer, summary_lines, tally
from pipeline.ops.demo.traffic import produce
from pipeline.ops.local_kafka import LocalKafka, LocalKafkaError
from pipeline.ops.simulator import ShowcaseSimulator
from pipeline.settings import Settings, TopicNames

DEMO_APP_ID = "journey-tower-demo"
#: The demo works on its own topics, so it never touches a real deployment's data.
DEMO_TOPICS = TopicNames(**{f: f"demo-{v}" for f, v in TopicNames().__dict__.items()})
#: Every rule on, with values that make each one fire in a 30 s run of the showcase traffic.
SHOWCASE_POLICY = SOURCE_ROOT / "deploy" / "policy.showcase.yaml"


def _reset_demo_topics(settings: Settings) -> None:
    """A fresh demo every time: drop the demo's topics and its changelog."""
    delete_topics(settings)
    admin = clients.admin(settings)
    internal = [t for t in admin.list_topics(timeout=10).topics if t.startswith(DEMO_APP_ID)]
    if internal:
        for fut in admin.delete_topics(internal, operation_timeout=30).values():
            fut.result()
    time.sleep(1.0)  # deletion is asynchronous in the controller


def _print_summary(
    out: Outputs, produced: int, settings: Settings, policy: Policy, policy_file: Path
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
        f"the worker exited (code {proc.returncode}); its log ends with:\n{log_tail(log_path)}"
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
    proc = start_worker(settings, policy_file, log_path)
    stack.callback(stop, proc)
    click.echo(f"Worker starting under policy {policy.policy_version} (log: {log_path}) ...")
    wait_http(f"http://{settings.web_host}:{settings.web_port}/healthz", proc, log_path, 60)

    sim = ShowcaseSimulator(customers=customers, seed=int(time.time()))
    produced = produce(settings, sim, seconds, rate, malformed)
    out = read_outputs(settings, produced, timeout=90)
    picked = _print_summary(out, produced, settings, policy, policy_file)
    if picked is not None:
        _show_agent_view(settings, picked[0], max(a["decided_at"] for a in out.audits))
    if impact_customers:
        measure_impact(settings, policy, policy_file, impact_customers, produced)
    t = settings.topics
    if keep:
        console_log = settings.data_dir.parent / "demo-console.log"
        console = start_console(settings, policy_file, console_log)
        stack.callback(stop, console)
        console_url = f"http://{settings.web_host}:{settings.console_port}"
        wait_http(f"{console_url}/healthz", console, console_log, 60, "console")
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
