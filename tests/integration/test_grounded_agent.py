"""examples/grounded_agent.py against a real worker, configured only by the environment as
`tower demo --keep` prints it: a new customer's first proposal is judged (no exit 1), and a
customer who opted in gets a proposal and its decision."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.client import TowerClient
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grounded_agent.py"


def agent_env(worker: WorkerProcess) -> dict[str, str]:
    """The variables a user exports; no flag names the broker, URL or topics."""
    env = {k: v for k, v in worker.env().items() if k != "TOWER_WEB_PORT"}
    env["TOWER_URL"] = f"http://127.0.0.1:{worker.web_port}"
    return env


def run_agent(worker: WorkerProcess, customer: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--customer", customer],
        env=agent_env(worker),
        capture_output=True,
        text=True,
        timeout=180,
    )


def wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> None:
    """Until the worker's /readyz answers 200 (partitions assigned and restored)."""
    url = f"http://127.0.0.1:{worker.web_port}/readyz"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet, or 503 while it joins and restores
            pass
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)


def test_a_new_customer_is_judged_and_an_opted_in_one_gets_a_decision(worker):
    worker.start()
    wait_ready(worker)

    new = run_agent(worker, "cust-new")
    assert new.returncode == 0, new.stdout + new.stderr
    assert "cust-new is new to the tower" in new.stdout
    assert "preflight: suppressed (consent)" in new.stdout, new.stdout

    with TowerClient(env=agent_env(worker)) as tower:
        granted = tower.signal(
            "cust-in",
            "consent_changed",
            channel="email",
            attributes={"purpose": "marketing", "granted": "true"},
        )
        tower.wait_decision(granted, timeout_s=60)
    known = run_agent(worker, "cust-in")
    assert known.returncode == 0, known.stdout + known.stderr
    assert "preflight: approved" in known.stdout, known.stdout
    assert "decision: approved" in known.stdout and "is on approved-actions" in known.stdout
