"""`tower policy ...`: the click commands to validate, publish, show and what-if a policy
document, and to propose, approve or reject a change that needs four eyes."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from confluent_kafka import KafkaException

from pipeline.contracts.policy_signatures import ApproversFileError, KeyFileError
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import load_policy_file
from pipeline.core.policy_governance import VerifiedApproval, verify_approval
from pipeline.core.whatif import what_if
from pipeline.kafka.policy_follower import load_approvers
from pipeline.kafka.topics import TopicsError, wait_for_broker
from pipeline.ops.cli_errors import friendly_errors
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.ops.policy.governance import (
    approve_policy,
    propose_policy,
    publish_policy,
    reject_policy,
    when,
)
from pipeline.ops.policy.policy_topic import read_active, read_policies
from pipeline.ops.policy.signing_keys import SigningKey, keygen, read_key, signer_name
from pipeline.ops.policy.whatif_input import format_report, load_events
from pipeline.settings import Settings

_friendly_errors = friendly_errors(
    PolicyCommandError, TopicsError, KafkaException, KeyFileError, ApproversFileError
)


_bootstrap_option = click.option(
    "--bootstrap",
    help=f"Kafka bootstrap servers [default: TOWER_BOOTSTRAP or {Settings().bootstrap}].",
)
_policy_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group("policy")
def policy_group() -> None:
    """Policy as code: validate, publish (hot reload on every worker), show, what-if;
    propose / approve / reject / pending when changes need four eyes."""


@policy_group.command("validate")
@_policy_file
@_friendly_errors
def policy_validate(file: Path) -> None:
    """Check a policy YAML; print every problem as file:line: path: message (exit 1)."""
    policy = load_policy_file(file)
    click.echo(f"ok: version {policy.version}, policy_version {policy.policy_version}")


@policy_group.command("publish")
@_policy_file
@_bootstrap_option
@click.option("--by", "by", default=None, help="Who publishes [default: $USER].")
@_friendly_errors
def policy_publish(file: Path, bootstrap: str | None, by: str | None) -> None:
    """Validate FILE and make it the active policy of every worker, without a restart."""
    import getpass

    settings = Settings.from_env(bootstrap=bootstrap)
    text = file.read_text(encoding="utf-8")
    published = publish_policy(settings, text, str(file), by or getpass.getuser())
    click.echo(f"published {published.record.policy_version} (was {published.old_version})")
    for line in published.changes or ["no setting changed"]:
        click.echo(f"  {line}")


@policy_group.command("show")
@_bootstrap_option
@_friendly_errors
def policy_show(bootstrap: str | None) -> None:
    """Show the active published policy (what the workers decide with)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    wait_for_broker(settings, timeout=10.0)
    active = read_active(settings)
    if active is None:
        click.echo(
            f"no policy published on {settings.topics.policies!r}: workers use "
            f"TOWER_POLICY_FILE or the built-in default ({DEFAULT_POLICY.policy_version})"
        )
        return
    r = active.record
    click.echo(f"policy_version  {r.policy_version}")
    click.echo(f"published       {when(r.published_at)} by {r.published_by}")
    if r.proposed_by is not None:
        click.echo(f"proposed        {when(r.proposed_at)} by {r.proposed_by}")
        click.echo(f"approved        {when(r.approved_at)} by {r.approved_by}")
    if r.approval_signature:
        verified = verify_approval(r, load_approvers(settings.policy_approvers_file))
        shown = verified.describe() if isinstance(verified, VerifiedApproval) else verified
        click.echo(f"signatures      {shown}")
    if active.policy.notes:
        click.echo(f"notes           {active.policy.notes}")


_by_option = click.option("--by", "by", default=None, help="Who does it [default: $USER].")
_version_argument = click.argument("version")
_key_option = click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your private key, to sign [default: TOWER_POLICY_KEY_FILE] (`tower policy keygen`).",
)


def _by(by: str | None) -> str:
    import getpass

    return by if by is not None else getpass.getuser()


def _signing(
    settings: Settings, key_file: Path | None, by: str | None
) -> tuple[str, SigningKey | None]:
    """Who signs with which key: `--by`, else the key's name in the approvers file, else $USER."""
    path = key_file or settings.policy_key_file
    key = read_key(path) if path is not None else None
    named = signer_name(by, key, load_approvers(settings.policy_approvers_file))
    return _by(named), key


@policy_group.command("keygen")
@click.option("--name", required=True, help="Your name, as the approvers file will list it.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for NAME.key (private, 0600) and NAME.pub.",
)
@_friendly_errors
def policy_keygen(name: str, out: Path) -> None:
    """Make an Ed25519 key pair to sign policy proposals and approvals with."""
    made = keygen(name, out)
    click.echo(
        f"private key  {made.private}  (mode 0600: keep it yours; --key / TOWER_POLICY_KEY_FILE)"
    )
    click.echo(f"public key   {made.public}")
    click.echo("add this line to the approvers file (TOWER_POLICY_APPROVERS_FILE) of every")
    click.echo("worker and operator:")
    click.echo(made.line)


@policy_group.command("propose")
@_policy_file
@_bootstrap_option
@_by_option
@_key_option
@_friendly_errors
def policy_propose(
    file: Path, bootstrap: str | None, by: str | None, key_file: Path | None
) -> None:
    """Validate FILE and file it, signed, for approval by someone else (four eyes)."""
    settings = Settings.from_env(bootstrap=bootstrap)
    text = file.read_text(encoding="utf-8")
    name, key = _signing(settings, key_file, by)
    proposed = propose_policy(settings, text, str(file), name, key=key)
    v = proposed.record.policy_version
    click.echo(f"proposed {v} (in force: {proposed.current_version}), awaiting approval")
    for line in proposed.changes or ["no setting changed"]:
        click.echo(f"  {line}")
    if not proposed.approval_required:
        click.echo("note: no policy requires approval here; `tower policy publish` would do")
    click.echo(f"next: someone else runs `tower policy approve {v} --key THEIR_KEY`")


@policy_group.command("approve")
@_version_argument
@_bootstrap_option
@_by_option
@_key_option
@_friendly_errors
def policy_approve(
    version: str, bootstrap: str | None, by: str | None, key_file: Path | None
) -> None:
    """Approve, signed, the pending VERSION (not your own proposal): it goes into force."""
    settings = Settings.from_env(bootstrap=bootstrap)
    name, key = _signing(settings, key_file, by)
    published = approve_policy(settings, version, name, key=key)
    r = published.record
    click.echo(
        f"approved {r.policy_version} (proposed by {r.proposed_by}, approved by "
        f"{r.approved_by}); now in force (was {published.old_version})"
    )
    for line in published.changes or ["no setting changed"]:
        click.echo(f"  {line}")


@policy_group.command("reject")
@_version_argument
@_bootstrap_option
@_by_option
@click.option("--reason", default=None, help="Why, for the audit record.")
@_friendly_errors
def policy_reject(version: str, bootstrap: str | None, by: str | None, reason: str | None) -> None:
    """Reject the pending VERSION: it never comes into force; the audit records who and why."""
    settings = Settings.from_env(bootstrap=bootstrap)
    rejected = reject_policy(settings, version, _by(by), reason)
    click.echo(f"rejected {version}: {rejected.audit['reason']}")


@policy_group.command("pending")
@_bootstrap_option
@_friendly_errors
def policy_pending(bootstrap: str | None) -> None:
    """List the proposed changes waiting for approval, oldest first."""
    settings = Settings.from_env(bootstrap=bootstrap)
    wait_for_broker(settings, timeout=10.0)
    state = read_policies(settings)
    if not state.pending:
        click.echo("no policy change pending")
        return
    for v, r in state.pending.items():
        proposer = r.proposed_by or r.published_by
        click.echo(f"{v}  proposed by {proposer} at {when(r.proposed_at or r.published_at)}")


@policy_group.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--events",
    "source",
    required=True,
    help="Recorded input: a JSONL file of agent events, or kafka:TOPIC (read to its end).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Decide at most N events.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_bootstrap_option
@_friendly_errors
def policy_diff(
    old: Path, new: Path, source: str, limit: int | None, as_json: bool, bootstrap: str | None
) -> None:
    """What would change: re-decide recorded events under OLD and NEW, count the differences."""
    old_policy, new_policy = load_policy_file(old), load_policy_file(new)
    settings = Settings.from_env(bootstrap=bootstrap)
    loaded = load_events(source, settings, limit)
    report = what_if(loaded.events, old_policy, new_policy)
    if as_json:
        data = report.to_dict()
        data["skipped"] = loaded.skipped
        data["settings_changed"] = policy_changes(old_policy, new_policy)
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    for line in policy_changes(old_policy, new_policy) or ["no setting changed"]:
        click.echo(f"setting  {line}")
    click.echo(format_report(report))
    if loaded.skipped:
        click.echo(f"\nskipped {loaded.skipped} invalid record(s), e.g.:", err=True)
        for problem in loaded.first_problems or []:
            click.echo(f"  {problem}", err=True)
