"""`tower console`: the journey owner's console, its own process (docs/console.md).

Wires the read model (`pipeline.console`) to the broker and the policy actions to the
same code as `tower policy propose / approve / reject`. A person's proposals and approvals
are signed with `TOWER_CONSOLE_KEYS_DIR/NAME.key` (NAME from their token) when that file
exists; where four eyes need signatures and it does not, the action is refused saying so.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from contextlib import suppress
from pathlib import Path

import click

from pipeline.console.action_audit import TopicActionLog
from pipeline.console.app import ActionRefused, PolicyActions, build_app
from pipeline.console.ingest import Ingest
from pipeline.console.store import Store
from pipeline.console.worker_state import WorkerState
from pipeline.contracts.policy_record import PolicyRecord
from pipeline.core.policy import Policy
from pipeline.core.policy_document import PolicyError
from pipeline.kafka.policy_follower import (
    PolicyMismatch,
    PolicyUnapproved,
    active_policy_from_record,
    load_approvers,
    policy_from_record,
)
from pipeline.ops.cli_errors import friendly_errors
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.ops.policy.governance import approve_policy, propose_policy, reject_policy
from pipeline.ops.policy.signing_keys import SigningKey, read_key
from pipeline.settings import Settings
from pipeline.web.auth import TokenFileError, WebSecurity, WebSecurityError
from pipeline.web.server import start

log = logging.getLogger(__name__)


class TopicPolicyActions(PolicyActions):
    """The console's policy actions: `tower policy`'s functions, signed with the person's
    key from the console's keys folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.approvers = load_approvers(settings.policy_approvers_file)

    def _key(self, name: str) -> SigningKey | None:
        folder = self.settings.console_keys_dir
        if folder is None:
            return None
        path = folder / f"{name}.key"
        return read_key(path) if path.is_file() else None

    def propose(self, text: str, source: str, by: str) -> str:
        try:
            done = propose_policy(self.settings, text, source, by, key=self._key(by))
        except (PolicyCommandError, PolicyError) as exc:
            raise ActionRefused(self._hint(str(exc), by)) from None
        return (
            f"proposed {done.record.policy_version} by {by} (in force: {done.current_version}); "
            "someone else approves it"
        )

    def approve(self, version: str, by: str) -> str:
        try:
            done = approve_policy(self.settings, version, by, key=self._key(by))
        except (PolicyCommandError, PolicyError) as exc:
            raise ActionRefused(self._hint(str(exc), by)) from None
        r = done.record
        return (
            f"approved {r.policy_version} (proposed by {r.proposed_by}, approved by {by}); in force"
        )

    def reject(self, version: str, by: str, reason: str) -> str:
        try:
            done = reject_policy(self.settings, version, by, reason or None)
        except (PolicyCommandError, PolicyError) as exc:
            raise ActionRefused(str(exc)) from None
        return str(done.audit["reason"])

    def accept(self, record: PolicyRecord, in_force: Policy) -> Policy:
        try:
            return active_policy_from_record(
                record, in_force, self.settings.policy_require_approval, self.approvers
            )
        except (PolicyMismatch, PolicyUnapproved) as exc:
            raise ValueError(str(exc)) from None

    def load(self, record: PolicyRecord) -> Policy:
        return policy_from_record(record)

    def _hint(self, message: str, by: str) -> str:
        if "--key" not in message and "signed" not in message:
            return message
        folder = self.settings.console_keys_dir
        where = f"{folder}/{by}.key" if folder else f"TOWER_CONSOLE_KEYS_DIR/{by}.key"
        return (
            f"{message.split(': pass --key')[0]}: the console signs with {where} "
            f"(`tower policy keygen --name {by} --out DIR`, then TOWER_CONSOLE_KEYS_DIR=DIR)"
        )


def console_security(settings: Settings) -> WebSecurity:
    """The web server's tokens and TLS, without forwarding (the console has no peers)."""
    from pipeline.web.auth import TokenFile, tls_context

    tokens = None if settings.web_tokens_file is None else TokenFile(settings.web_tokens_file)
    tls = tls_context(settings.web_tls_cert, settings.web_tls_key)
    security = WebSecurity(
        tokens=tokens,
        tls=tls,
        open_metrics=settings.web_open_metrics,
        secure_cookie=tls is not None,
    )
    security.check_bind(settings.web_host)
    return security


def console_url(settings: Settings) -> str:
    scheme = "https" if settings.web_tls_cert is not None else "http"
    return f"{scheme}://{settings.web_host}:{settings.console_port}"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Ingest in a thread, serve the pages until `stop` is set."""
    store = Store.open(settings.console_db, settings.console_db_memory)
    ingest = Ingest(settings, store)
    reader = threading.Thread(target=ingest.run, name="console-ingest", daemon=True)
    reader.start()
    app = build_app(
        store,
        console_security(settings),
        TopicPolicyActions(settings),
        ingest,
        action_log=TopicActionLog(settings),
        worker=WorkerState(settings.console_worker_url or settings.advertised_url),
    )
    runner = await start(app, settings.web_host, settings.console_port)
    log.info("console on %s, read model %s", console_url(settings), settings.console_db)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        ingest.stop()
        await asyncio.to_thread(reader.join, 10)
        store.close()


@click.command("console")
@click.option("--port", type=int, default=None, help="Port [default: TOWER_CONSOLE_PORT or 6070].")
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The read model's file [default: TOWER_CONSOLE_DB or var/console/console.duckdb].",
)
@click.option("--bootstrap", help="Kafka bootstrap servers [default: TOWER_BOOTSTRAP].")
@friendly_errors(WebSecurityError, TokenFileError, OSError)
def console_command(port: int | None, db: Path | None, bootstrap: str | None) -> None:
    """The journey owner's console: overview, agents, policy review with four eyes and
    what-if, dead letters, customers, the impact report, the live feed."""
    settings = Settings.from_env(bootstrap=bootstrap, console_port=port, console_db=db)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        click.echo(f"console on {console_url(settings)} (read model {settings.console_db})")
        await serve(settings, stop)

    asyncio.run(main())
