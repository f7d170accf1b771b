"""`tower`: the command line of Journey Tower.

Every command reads its defaults from `TOWER_*` environment variables (docs/configuration.md);
flags override them. Errors print one line saying what to do and exit non-zero.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.kafka.startup_checks import StartupProblem


#: the settings' defaults, shown in the help texts (an option left out takes its TOWER_*
#: variable, else this)
DEFAULTS = Settings()

MAIN_HELP = f"""Journey Tower: one approved-action stream out of many AI agents' proposals.

    \b
    Typical local session:
      tower kafka up          # a real Apache Kafka broker on 127.0.0.1:{DEFAULTS.kafka_port}
      tower topics create     # the topics, idempotently (a worker creates none)
      tower worker            # decide events; metrics on http://{DEFAULTS.web_host}:{DEFAULTS.web_port}/metrics
      tower demo              # all of the above plus simulated agents and a summary
    """


#: every command but `worker`, as "module:attribute": imported only when asked for, so that a
#: worker's start (and every `tower` call) pays for the one command it runs, not for the
#: console's columnar database or the HTTP client the others bring
LAZY_COMMANDS = {
    "kafka": "pipeline.ops.kafka_commands:kafka_group",
    "topics": "pipeline.ops.kafka_commands:topics_group",
    "demo": "pipeline.ops.demo.command:demo_command",
    "audit": "pipeline.ops.audit_commands:audit_group",
    "explain": "pipeline.ops.audit_commands:explain_command",
    "replay": "pipeline.ops.audit_commands:replay_command",
    "policy": "pipeline.ops.policy.commands:policy_group",
    "report": "pipeline.ops.report_commands:report_command",
    "web": "pipeline.ops.web_commands:web_group",
    "api": "pipeline.ops.api_commands:api_group",
    "mcp": "pipeline.ops.mcp_commands:mcp_command",
    "console": "pipeline.ops.console_commands:console_command",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = LAZY_COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(
    cls=LazyGroup,
    help=MAIN_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="journey-tower", prog_name="tower")
def main() -> None:
    """The `tower` command group (its help is MAIN_HELP: defaults from the settings)."""


def _worker_epilog() -> str:
    from pipeline.kafka.startup_checks import exit_code_lines

    return "\b\nExit codes when it refuses to start (one line on stderr says why):\n" + "\n".join(
        f"  {line}" for line in exit_code_lines()
    )


@main.command(epilog=_worker_epilog())
@click.option(
    "--bootstrap",
    envvar="TOWER_BOOTSTRAP",
    show_envvar=True,
    show_default=DEFAULTS.bootstrap,
    help="Kafka bootstrap servers.",
)
@click.option(
    "--web-port",
    type=int,
    envvar="TOWER_WEB_PORT",
    show_envvar=True,
    show_default=str(DEFAULTS.web_port),
    help="Port for /metrics and pages.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="TOWER_DATA_DIR",
    show_envvar=True,
    show_default=str(DEFAULTS.data_dir),
    help="Where the worker keeps its RocksDB state (rebuilt from the changelog if lost).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="TOWER_POLICY_FILE",
    show_envvar=True,
    show_default="the built-in policy",
    help="Policy YAML to start with (validated first).",
)
@click.option(
    "--runtime",
    "--engine",
    type=click.Choice(["faust", "transactional", "native"]),
    show_default=f"TOWER_RUNTIME or {DEFAULTS.runtime}",
    help="faust: at-least-once, identical re-emits after a crash; transactional: "
    "exactly-once with Kafka transactions on confluent-kafka. "
    "--engine, TOWER_ENGINE and native are the earlier names.",
)
@click.option("--loglevel", default="info", show_default=True, help="Log level.")
def worker(
    bootstrap: str | None,
    web_port: int | None,
    data_dir: Path | None,
    policy_file: Path | None,
    runtime: str | None,
    loglevel: str,
) -> None:
    """Run a decision worker (the Faust runtime, or --runtime transactional) in the foreground.

    Consumes agent-events, keeps per-customer state in RocksDB with a changelog topic,
    and publishes approved-actions, audit and deadletter records. Start several to spread
    customers over partitions. Stop with Ctrl-C. `kill -USR1 PID` writes every thread's
    stack to stderr (a worker that seems stuck says where).

    Before it joins its group it checks the settings, the web port, the broker and every
    topic it uses, and creates none: run `tower topics create` first.
    """
    import faulthandler
    import signal

    from pipeline.core.policy_document import PolicyError
    from pipeline.kafka.startup_checks import StartupFailure, StartupProblem, startup_problem
    from pipeline.web.auth import TokenFileError, WebSecurity, WebSecurityError

    faulthandler.register(signal.SIGUSR1, all_threads=True)

    try:
        settings = Settings.from_env(
            bootstrap=bootstrap,
            web_port=web_port,
            data_dir=data_dir,
            policy_file=policy_file,
            runtime=runtime,
        )
        WebSecurity.from_settings(settings)
    except ValueError as exc:  # a TOWER_* variable out of range: say which, no traceback
        _refuse(StartupProblem(StartupFailure.SETTINGS, str(exc)))
    problem = startup_problem(settings)
    if problem is not None:
        _refuse(problem)
    if settings.runtime == "transactional":
        from pipeline.runtime.transactional.worker import run_worker
    else:
        from pipeline.runtime.faust.app import run_worker
    from pipeline.contracts.policy_signatures import ApproversFileError
    from pipeline.kafka.policy_follower import PolicyRefused
    from pipeline.kafka.schema_registry import RegistryStartError

    try:
        run_worker(settings, loglevel=loglevel)
    except PolicyError as exc:
        raise click.ClickException(f"the policy was refused:\n{exc}") from exc
    except (
        PolicyRefused,  # fails closed: no verified policy
        ApproversFileError,
        TokenFileError,  # the web server's setup
        WebSecurityError,
        RegistryStartError,  # the output schemas could not be registered
    ) as exc:
        raise click.ClickException(str(exc)) from None


def _refuse(problem: StartupProblem) -> NoReturn:
    """One line (a tokens file's several problems joined), the cause's exit code."""
    message = "; ".join(line.strip() for line in problem.message.splitlines() if line.strip())
    click.echo(f"error: {message}", err=True)
    sys.exit(int(problem.failure))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
