"""The demo's child processes: the worker and the console, run from this checkout, started,
waited for and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import click

from pipeline.settings import Settings

#: The checkout the demo runs from: its worker must run the same code, whatever the cwd.
SOURCE_ROOT = Path(__file__).resolve().parents[3]


def worker_settings(settings: Settings, policy_file: Path) -> Settings:
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


def start_worker(settings: Settings, policy_file: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The worker runs this checkout's code (PYTHONPATH) with the demo's settings, those of a
    secured local broker included."""
    env = {**os.environ, **worker_settings(settings, policy_file).to_env()}
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


def start_console(settings: Settings, policy_file: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`tower console` on the demo's topics, local like the worker's pages (no tokens), with
    a fresh read model (the demo's topics are new every run)."""
    db = settings.data_dir.parent / "demo-console" / "console.duckdb"
    shutil.rmtree(db.parent, ignore_errors=True)
    console = replace(worker_settings(settings, policy_file), console_db=db)
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


def log_tail(log_path: Path, lines: int = 20) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float, what: str = "worker"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(
                f"the {what} exited early; its log ends with:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise click.ClickException(f"the {what} did not answer on {url} within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
