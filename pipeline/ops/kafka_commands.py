"""`tower kafka ...` and `tower topics ...`: a local broker and the tower's topics in two commands.

Kept apart from cli.py so the main CLI stays importable without these groups. Errors are
expected conditions (no Java, port taken, wrong partition count): they print one line saying
what to do and exit 1, never a traceback.
"""

from __future__ import annotations

import sys

import click

from pipeline.kafka.topics import (
    TopicsError,
    create_topics,
    delete_topics,
    list_topics,
    topic_specs,
)
from pipeline.ops.cli_errors import friendly_errors
from pipeline.ops.local_cluster import LocalCluster
from pipeline.ops.local_kafka import LocalKafka, LocalKafkaError
from pipeline.ops.local_security import ROLES, SecurityMaterialError, password_file
from pipeline.settings import Settings

_port_option = click.option(
    "--port",
    type=int,
    help=f"Broker port [default: TOWER_KAFKA_PORT or {Settings().kafka_port}]; each port has "
    "its own broker and data.",
)
_bootstrap_option = click.option(
    "--bootstrap",
    help=f"Kafka bootstrap servers [default: TOWER_BOOTSTRAP or {Settings().bootstrap}].",
)


_friendly_errors = friendly_errors(LocalKafkaError, TopicsError, SecurityMaterialError)


def _local(
    port: int | None,
    version: str | None = None,
    controller_port: int | None = None,
    secure: bool | None = None,
) -> LocalKafka:
    settings = Settings.from_env(kafka_port=port, kafka_version=version)
    return LocalKafka.from_settings(settings, controller_port=controller_port, secure=secure)


def _cluster(port: int | None) -> LocalCluster | None:
    """The local cluster at `port` (`up --brokers N` made it), None for a single broker."""
    settings = Settings.from_env(kafka_port=port)
    return LocalCluster.existing(settings.kafka_port, settings.cache_dir, out=sys.stdout)


def _need_cluster(port: int | None) -> LocalCluster:
    cluster = _cluster(port)
    if cluster is None:
        raise LocalKafkaError(
            "no local cluster at this port: start one with `tower kafka up --brokers 3`"
        )
    return cluster


_node_option = click.option(
    "--node", type=int, help="Only this node of a local cluster (1, 2, 3) [default: all]."
)


@click.group("kafka")
def kafka_group() -> None:
    """A local single-node Apache Kafka broker (KRaft), no Docker needed.

    Needs Java 17+; the first `up` fetches the broker jars with Maven (mvn) into
    TOWER_CACHE_DIR (~/.cache/journey-tower). Data and server.log live in
    <cache>/run/<port>, so the broker keeps its topics across restarts.
    """


@kafka_group.command("up")
@_port_option
@click.option("--controller-port", type=int, help="KRaft controller port [default: port+1].")
@click.option("--version", "version", help="Kafka version [default: TOWER_KAFKA_VERSION or 4.1.1].")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the broker to answer.",
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Nodes: 3 starts a replicated cluster on loopback, node i on port+2(i-1) (its "
    "controller on the port after), topics replicated 3 times with min.insync.replicas 2.",
)
@click.option(
    "--secure",
    is_flag=True,
    default=None,
    help="A SASL_SSL listener (SCRAM-SHA-512, a local CA) with ACLs for the roles "
    f"{', '.join(ROLES)}; writes client-<role>.properties into the run dir [default: as the "
    "run dir was first started].",
)
@_friendly_errors
def kafka_up(
    port: int | None,
    controller_port: int | None,
    version: str | None,
    wait_s: float,
    brokers: int,
    secure: bool | None,
) -> None:
    """Start the broker (or cluster) in the background and wait until it serves requests.

    Harmless when it is already running. Stop it with `tower kafka down`.
    """
    if brokers == 1:
        broker = _local(port, version, controller_port, secure)
        broker.up(wait_s=wait_s)
        if broker.secure:
            _show_roles(broker)
        return
    if secure:
        raise click.UsageError("--secure starts one broker; use it without --brokers")
    settings = Settings.from_env(kafka_port=port, kafka_version=version)
    cluster = LocalCluster(
        brokers, settings.kafka_port, settings.cache_dir, settings.kafka_version, out=sys.stdout
    )
    cluster.up(wait_s=max(wait_s, 90.0))
    click.echo(f"cluster of {brokers} up: TOWER_BOOTSTRAP={cluster.bootstrap}")


def _show_roles(broker: LocalKafka) -> None:
    """Grant the roles their ACLs on this deployment's topics and say where their files are."""
    settings = Settings.from_env()
    files = broker.grant_roles(settings.topics, settings.app_id)
    click.echo(f"SASL_SSL ({broker.material.ca_file} signs the broker) with ACLs; client files:")
    for role, path in files.items():
        click.echo(f"  {role:<13} {path}  ({ROLES[role]})")
    env = broker.material.env("tower")
    del env["TOWER_SASL_PASSWORD"]
    env["TOWER_SASL_PASSWORD_FILE"] = str(password_file(broker.material, "tower"))
    click.echo("Workers connect as `tower`:")
    click.echo("  " + " ".join(f"{k}={v}" for k, v in env.items()))


@kafka_group.command("fetch")
@click.option("--version", "version", help="Kafka version [default: TOWER_KAFKA_VERSION or 4.1.1].")
@_friendly_errors
def kafka_fetch(version: str | None) -> None:
    """Fetch the broker jars with Maven into the cache, once (no-op when present)."""
    path = _local(None, version).ensure_jars()
    click.echo(f"Kafka jars ready in {path}")


@kafka_group.command("down")
@_port_option
@_node_option
@_friendly_errors
def kafka_down(port: int | None, node: int | None) -> None:
    """Stop the broker (or every node of the cluster) cleanly: SIGTERM, then SIGKILL after
    30 s. Keeps the data."""
    cluster = _cluster(port)
    if cluster is None:
        _local(port).down()
    elif node is not None:
        cluster.node(node).down()
    else:
        cluster.down()


@kafka_group.command("status")
@_port_option
@_friendly_errors
def kafka_status(port: int | None) -> None:
    """Show whether the broker (or each cluster node) runs; exit 0 if all do, 1 if not."""
    cluster = _cluster(port)
    statuses = [_local(port).status()] if cluster is None else cluster.status()
    for i, st in enumerate(statuses, start=1):
        name = f"node {i}  " if cluster is not None else ""
        if st.running:
            click.echo(
                f"{name}running   pid {st.pid}, Kafka {st.version}, bootstrap {st.bootstrap}"
            )
        else:
            click.echo(f"{name}stopped   no broker started by tower on {st.bootstrap}")
        click.echo(f"{name}log       {st.log_path}")
    if cluster is not None:
        click.echo(f"active controller: node {cluster.quorum_leader() or '?'}")
    sys.exit(0 if all(st.running for st in statuses) else 1)


@kafka_group.command("logs")
@_port_option
@_node_option
@click.option("-n", "--lines", type=int, default=50, show_default=True, help="Lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@_friendly_errors
def kafka_logs(port: int | None, node: int | None, lines: int, follow: bool) -> None:
    """Print the end of the broker's server.log (of a cluster: --node N, default 1)."""
    cluster = _cluster(port)
    broker = _local(port) if cluster is None else cluster.node(node or 1)
    try:
        for line in broker.logs(lines=lines, follow=follow):
            click.echo(line)
    except KeyboardInterrupt:
        pass


@kafka_group.command("kill")
@click.argument("node", type=int)
@_port_option
@_friendly_errors
def kafka_kill(node: int, port: int | None) -> None:
    """SIGKILL one node of the local cluster, as a crashed machine would stop (fault tests)."""
    pid = _need_cluster(port).kill(node)
    click.echo(f"node {node} killed (pid {pid}); `tower kafka start {node}` brings it back")


@kafka_group.command("start")
@click.argument("node", type=int)
@_port_option
@_friendly_errors
def kafka_start(node: int, port: int | None) -> None:
    """Start one node of the local cluster again and wait until it answers."""
    _need_cluster(port).start(node)


@click.group("topics")
def topics_group() -> None:
    """The tower's topics: agent-events, tower-wakeups, approved-actions, audit, deadletter
    (TOWER_PARTITIONS partitions each, 8 by default), the compacted policies topic, and the
    workers' compacted state changelog (<TOWER_APP_ID>-customer-state-changelog).
    """


@topics_group.command("create")
@click.option(
    "--partitions",
    type=int,
    help="Partitions per topic [default: TOWER_PARTITIONS or 8]; policies always has 1.",
)
@_bootstrap_option
@_friendly_errors
def topics_create(partitions: int | None, bootstrap: str | None) -> None:
    """Create the missing topics and check the existing ones.

    Idempotent. Exits 1 if an existing topic has a different partition count or config,
    since records would then be keyed onto the wrong partitions.
    """
    settings = Settings.from_env(bootstrap=bootstrap, partitions=partitions)
    report = create_topics(settings, partitions)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        click.echo(
            f"error: {len(report.problems)} topic(s) on {settings.bootstrap} do not match; "
            "see above",
            err=True,
        )
        sys.exit(1)


@topics_group.command("list")
@_bootstrap_option
@_friendly_errors
def topics_list(bootstrap: str | None) -> None:
    """List the broker's topics with partition counts, marking missing tower topics."""
    settings = Settings.from_env(bootstrap=bootstrap)
    existing = list_topics(settings)
    ours = {s.name: s for s in topic_specs(settings)}
    for name, spec in ours.items():
        n = existing.get(name)
        state = "missing" if n is None else f"{n} partition{'' if n == 1 else 's'}"
        if n != spec.partitions:
            state += f" (expected {spec.partitions})"
        click.echo(f"{name:<24} {state}")
    for name, n in existing.items():
        if name not in ours:
            click.echo(f"{name:<24} {n} partitions (not a tower topic)")


@topics_group.command("delete")
@_bootstrap_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_friendly_errors
def topics_delete(bootstrap: str | None, yes: bool) -> None:
    """Delete the tower's topics, the state changelog included, and their records (a dev
    reset)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    if not yes:
        click.confirm(
            f"Delete the tower topics and all their records on {settings.bootstrap}?", abort=True
        )
    deleted = delete_topics(settings)
    click.echo(f"deleted {', '.join(deleted)}" if deleted else "no tower topics to delete")
