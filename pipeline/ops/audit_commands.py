"""`tower audit`, `tower explain`, `tower replay`: "what happened, and would it happen again?"
`tower audit verify`: "is the trail unbroken?" (the hash chain, contracts/audit_chain.py).

Each command scans the audit topic from the beginning to the end offsets it had at start.
The customer id is the record key, but the worker writes audit records to the partition its
input came from (whatever partitioner the agent used), so a customer's partition cannot be
computed here: the scan reads every partition and filters by key before decoding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from pipeline.contracts.audit_chain import GENESIS, PartitionCheck
from pipeline.contracts.codec import decode_record
from pipeline.core.policy_document import PolicyError
from pipeline.core.replay import (
    MATCH,
    MISMATCH,
    NOT_RECHECKABLE,
    UNREPLAYABLE,
    UNRESOLVED,
    Replayed,
    replay_all,
    replay_customer,
    summarize,
)
from pipeline.kafka.audit_tail import last_seals, partition_records
from pipeline.kafka.reader import (
    ScanError,
    TopicRecord,
    TopicRefused,
    partition_count,
    scan_consumer,
    scan_topic,
    watermarks,
)
from pipeline.kafka.schema_registry import RegistryUnavailable, lookup_for
from pipeline.ops import audit_render as render
from pipeline.ops.cli_errors import friendly_errors
from pipeline.ops.replay_policies import policy_resolver
from pipeline.settings import Settings

#: `tower replay` exit codes
EXIT_MISMATCH = 1
EXIT_UNVERIFIED = 2
#: `tower audit verify` exit codes
EXIT_BROKEN = 1
EXIT_OUTSIDE_CHAIN = 2

_bootstrap_option = click.option(
    "--bootstrap",
    help=f"Kafka bootstrap servers [default: TOWER_BOOTSTRAP or {Settings().bootstrap}].",
)


_friendly_errors = friendly_errors(ScanError, PolicyError)


def _progress(topic: str) -> Callable[[int, int], None]:
    def show(read: int, total: int) -> None:
        click.echo(f"scanning {topic}: {read:,}/{total:,} records", err=True)

    return show


def audit_records(
    settings: Settings, keep: Callable[[bytes | None, bytes | None], bool] | None = None
) -> Iterator[tuple[TopicRecord, dict[str, Any]]]:
    """Decoded audit records passing `keep`, in topic order (decision order per customer)."""
    topic = settings.topics.audit
    lookup = lookup_for(settings)
    for rec in scan_topic(settings, topic, keep=keep, progress=_progress(topic)):
        if not rec.value:
            continue
        try:
            yield rec, decode_record("audit_record", rec.value, lookup)
        except RegistryUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            click.echo(f"warning: {_where(rec)} is not an audit record: {exc}", err=True)


def _where(rec: TopicRecord) -> str:
    return f"{rec.topic} partition {rec.partition} offset {rec.offset}"


def _with_key(customer: str) -> Callable[[bytes | None, bytes | None], bool]:
    key = customer.encode()
    return lambda k, _v: k == key


def _containing(text: str) -> Callable[[bytes | None, bytes | None], bool]:
    """Cheap pre-filter: ids are ASCII and appear verbatim in both Avro and JSON values."""
    needle = text.encode()
    return lambda _k, v: v is not None and needle in v


Found = list[tuple[TopicRecord, dict[str, Any]]]


def _find_decision(settings: Settings, decision_id: str) -> Found:
    found = [
        (rec, d)
        for rec, d in audit_records(settings, _containing(decision_id))
        if d.get("decision_id") == decision_id
    ]
    if not found:
        raise ValueError(
            f"no audit record with decision id {decision_id!r} on topic {settings.topics.audit} "
            f"({settings.bootstrap}); decision ids look like d-<20 hex digits>"
        )
    return found


class _AuditGroup(click.Group):
    """`tower audit CUSTOMER ...` shows a timeline, `tower audit verify ...` checks the
    chain: anything that is not a subcommand goes to the timeline."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in self.commands:
            return super().resolve_command(ctx, args)
        return None, audit_command, args  # no name: its usage reads `tower audit CUSTOMER`


@click.command("audit")
@click.argument("customer")
@click.option("--since", help="Only decisions at or after this time: ISO 8601 or epoch ms.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (full records).")
@_bootstrap_option
@_friendly_errors
def audit_command(customer: str, since: str | None, as_json: bool, bootstrap: str | None) -> None:
    """Every decision about CUSTOMER, oldest first, from the audit topic."""
    settings = Settings.from_env(bootstrap=bootstrap)
    since_ms = render.parse_since(since) if since else None
    records = [
        d
        for _, d in audit_records(settings, _with_key(customer))
        if since_ms is None or d.get("decided_at", 0) >= since_ms
    ]
    if as_json:
        for d in records:
            click.echo(render.json_line(d))
        return
    if not records:
        click.echo(f"no decisions about {customer} on {settings.topics.audit}", err=True)
        return
    for line in render.audit_table(records):
        click.echo(line)


@click.command("explain")
@click.argument("decision_id")
@_bootstrap_option
@_friendly_errors
def explain_command(decision_id: str, bootstrap: str | None) -> None:
    """Explain one decision in words: input, policy, rule trace, outcome, approved action.

    A decision id names one event of one customer, so a replayed event (outcome duplicate)
    shares it with the first decision: every audit record with the id is shown.
    """
    settings = Settings.from_env(bootstrap=bootstrap)
    found = _find_decision(settings, decision_id)
    action_ids = {d["action_id"] for _, d in found if d.get("action_id")}
    try:
        actions = _approved_actions(settings, action_ids) if action_ids else {}
    except TopicRefused as exc:  # the auditor role reads the audit, not the actions
        click.echo(f"note: {exc}; explained from the audit alone, without the action as sent")
        actions = {}
    for i, (rec, d) in enumerate(found):
        if i:
            click.echo("")
        action, action_rec = actions.get(d.get("action_id") or "", (None, None))
        action_where = _where(action_rec) if action_rec else ""
        for line in render.explain(d, _where(rec), action, action_where):
            click.echo(line)


def _approved_actions(
    settings: Settings, action_ids: set[str]
) -> dict[str, tuple[dict[str, Any], TopicRecord]]:
    """The first approved-actions record of each id (a restarted worker may re-emit one)."""
    topic = settings.topics.approved
    out: dict[str, tuple[dict[str, Any], TopicRecord]] = {}

    def keep(_k: bytes | None, v: bytes | None) -> bool:
        return v is not None and any(a.encode() in v for a in action_ids)

    lookup = lookup_for(settings)
    for rec in scan_topic(settings, topic, keep=keep, progress=_progress(topic)):
        try:
            action = decode_record("approved_action", rec.value or b"", lookup)
        except RegistryUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError:
            continue
        if action.get("action_id") in action_ids:
            out.setdefault(action["action_id"], (action, rec))
    return out


@click.command("replay")
@click.argument("decision_id", required=False)
@click.option("--customer", help="Replay every decision about this customer.")
@click.option("--all", "everything", is_flag=True, help="Replay every decision on the topic.")
@click.option(
    "--policy",
    "policy_files",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A policy YAML that decisions may name (repeatable); the built-in policy and the "
    "versions published on the policies topic are always known.",
)
@click.option(
    "--show",
    type=int,
    default=20,
    show_default=True,
    help="With --all or --customer: how many mismatches (and how many decisions that "
    "cannot be re-checked) to print.",
)
@_bootstrap_option
@_friendly_errors
def replay_command(
    decision_id: str | None,
    customer: str | None,
    everything: bool,
    policy_files: tuple[Path, ...],
    show: int,
    bootstrap: str | None,
) -> None:
    """Re-run the decision core on recorded inputs and check it decides the same again.

    The customer's state is rebuilt from their whole audit history, since a decision
    depends on the earlier ones. A mismatch prints the recorded and the replayed trace.

    Exit code 0 when everything matched, 1 on any mismatch, 2 when nothing mismatched but
    some decisions could not be checked (unknown policy version, undecodable input).
    Decisions the policy's audit levels make impossible to re-check (input not kept, or a
    difference on a redacted or hashed input) are listed and counted apart, and do not
    change the exit code.
    """
    if sum((decision_id is not None, customer is not None, everything)) != 1:
        raise click.UsageError("give exactly one of DECISION_ID, --customer C or --all")
    settings = Settings.from_env(bootstrap=bootstrap)
    resolve = policy_resolver(policy_files, settings, _warn)
    if decision_id is not None:
        _, first = _find_decision(settings, decision_id)[0]
        history = [d for _, d in audit_records(settings, _with_key(first["customer_id"]))]
        results = [r for r in replay_customer(history, resolve) if r.decision_id == decision_id]
        for r in results:
            for line in render.replay_lines(r):
                click.echo(line)
        sys.exit(_exit_code(results))
    keep = _with_key(customer) if customer is not None else None
    records = [d for _, d in audit_records(settings, keep)]
    started = time.perf_counter()
    results = replay_all(records, resolve)
    seconds = time.perf_counter() - started
    _print_mismatches(results, show)
    for line in render.summary_lines(summarize(results), seconds):
        click.echo(line)
    sys.exit(_exit_code(results))


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _print_mismatches(results: list[Replayed], show: int) -> None:
    not_matched = [r for r in results if r.status not in (MATCH, *NOT_RECHECKABLE)]
    _print_some(not_matched, show, "not matched")
    not_checkable = [r for r in results if r.status in NOT_RECHECKABLE]
    if not_checkable:
        click.echo(f"not re-checkable under the policy's audit levels: {len(not_checkable)}")
        _print_some(not_checkable, show, "not re-checkable")


def _print_some(results: list[Replayed], show: int, what: str) -> None:
    for r in results[:show]:
        for line in render.replay_lines(r):
            click.echo(line)
    if len(results) > show:
        click.echo(f"... and {len(results) - show} more {what} (see --show)")


def _exit_code(results: list[Replayed]) -> int:
    """Only a real mismatch fails; what the audit levels did not keep is no failure."""
    if any(r.status == MISMATCH for r in results):
        return EXIT_MISMATCH
    if any(r.status in (UNRESOLVED, UNREPLAYABLE) for r in results):
        return EXIT_UNVERIFIED
    return 0


@click.command("verify")
@click.option("--partition", type=int, help="Only this partition [default: every one].")
@click.option(
    "--from-offset",
    type=int,
    help="Trust the records before this offset and prove the rest, from the start of the "
    "run holding it [default: the partition's first record].",
)
@click.option("--show", type=int, default=20, show_default=True, help="Offsets listed per kind.")
@_bootstrap_option
@_friendly_errors
def verify_command(
    partition: int | None, from_offset: int | None, show: int, bootstrap: str | None
) -> None:
    """Prove the audit topic's hash chain unbroken: each run of worker records ends with a
    seal naming the hash of the run before it in its partition and its own.

    Exit code 0 when every partition is unbroken, 1 at a break (the seal's offset, its run's
    first offset and why are printed), 2 when nothing is broken but some records no seal
    covers: outside the chain (written by something else than a worker, e.g. a hand-made
    record, or by a worker stopped mid-run) or, at a partition's end, not sealed yet (a
    worker still writing their run: verify again). Their offsets are printed.
    """
    settings = Settings.from_env(bootstrap=bootstrap)
    topic = settings.topics.audit
    checks = [
        _verify_partition(settings, p, from_offset) for p in _partitions(settings, topic, partition)
    ]
    for check in checks:
        for line in render_check(topic, check, show):
            click.echo(line)
    if any(c.broken for c in checks):
        sys.exit(EXIT_BROKEN)
    if any(c.outside or c.unsealed for c in checks):
        sys.exit(EXIT_OUTSIDE_CHAIN)


def _partitions(settings: Settings, topic: str, only: int | None) -> list[int]:
    consumer = scan_consumer(settings, "audit-verify")
    try:
        count = partition_count(consumer, settings, topic, 30.0)
    finally:
        consumer.close()
    if only is None:
        return list(range(count))
    if not 0 <= only < count:
        raise click.BadParameter(f"{topic} has partitions 0..{count - 1}", param_hint="--partition")
    return [only]


def _verify_partition(settings: Settings, partition: int, start: int | None) -> PartitionCheck:
    topic = settings.topics.audit
    consumer = scan_consumer(settings, "audit-verify")
    try:
        low, _ = watermarks(consumer, topic, partition, 30.0)
    finally:
        consumer.close()
    seal = None
    if start is not None and start > low:  # from the run holding `start`, on its seal before
        seal = last_seals(settings, topic, {partition: start})[partition]
    if seal is not None:
        check = PartitionCheck(partition, seal[1], first_offset=seal[0] + 1)
    else:  # from the start, or from what retention kept of it
        check = PartitionCheck(partition, GENESIS, anchored=low == 0, first_offset=low)

    def show(read: int, total: int) -> None:
        click.echo(f"verifying {topic} partition {partition}: {read:,}/{total:,}", err=True)

    for msg in partition_records(settings, topic, partition, check.first_offset, progress=show):
        offset = msg.offset()
        assert offset is not None
        if not check.feed(offset, msg.key(), msg.value(), msg.headers()):
            break
    return check.finish()


def render_check(topic: str, check: PartitionCheck, show: int) -> list[str]:
    where = f"{topic} partition {check.partition}"
    checked = f"{check.checked:,} records in {check.runs:,} runs from offset {check.first_offset}"
    broken = check.broken
    if broken is not None:
        lines = [
            f"{where}: BROKEN at offset {broken.offset} (the run from offset "
            f"{broken.run_start}): {broken.reason}"
        ]
    elif check.outside or check.unsealed:
        lines = [f"{where}: no break in {checked}, but not every record is sealed"]
    else:
        lines = [f"{where}: OK, {checked}"]
    kinds = (
        (
            check.unprovable,
            "at the start not provable (their run began before the first record retention kept)",
        ),
        (
            check.outside,
            "outside the chain (no seal covers them: not written by a worker, or "
            "by one stopped mid-run)",
        ),
        (
            check.unsealed,
            "at the end not sealed (a worker may still be writing their run: verify again)",
        ),
    )
    for offsets, what in kinds:
        if offsets:
            lines.append(
                f"{where}: {len(offsets)} record(s) {what}: offsets {spans(offsets, show)}"
            )
    return lines


def spans(offsets: list[int], show: int) -> str:
    """Ascending offsets as ranges ("3-7, 9"), the first `show` of them."""
    ranges: list[list[int]] = []
    for o in offsets:
        if ranges and o == ranges[-1][1] + 1:
            ranges[-1][1] = o
        else:
            ranges.append([o, o])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges[:show])
    more = len(ranges) - show
    return f"{text} and {more} more range(s)" if more > 0 else text


audit_group = _AuditGroup(
    "audit",
    help="""Every decision about CUSTOMER (`tower audit CUSTOMER [--since T] [--json]`,
    see `tower audit CUSTOMER --help`), or prove the audit trail unbroken
    (`tower audit verify`).""",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    commands=[verify_command],
)
