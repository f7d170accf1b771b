"""`tower demo --keep` stops the worker, console and broker it started on SIGTERM (a service
manager, `docker stop`, `kill`) as on Ctrl-C (SIGINT): nothing it started is left running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.ops.local_kafka import LocalKafka
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration


def wait_for(what: str, done: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout:.0f}s; the demo said:\n{log.read_text()}"
            )
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


# SIGINT takes the same path as SIGTERM (one handler); its run of a whole demo is in `make soak`
@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.soak)],
    ids=["sigterm", "sigint"],
)
def test_a_signal_stops_the_worker_console_and_broker_the_demo_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port, controller = free_port(), free_port()
    broker = LocalKafka(port=port, controller_port=controller)
    env = {
        **os.environ,
        "TOWER_KAFKA_PORT": str(port),
        "TOWER_CONTROLLER_PORT": str(controller),
        "TOWER_WEB_PORT": str(free_port()),
        "TOWER_CONSOLE_PORT": str(free_port()),
        "PYTHONPATH": str(REPO),
    }
    args = ["--keep", "--seconds", "1", "--rate", "20", "--customers", "20"]
    args += ["--malformed", "0", "--impact-customers", "0"]
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "pipeline.ops.cli", "demo", *args],
            env=env,
            cwd=tmp_path,  # the demo's var/ goes here, not into the checkout
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    workers: list[int] = []
    try:
        wait_for("the demo keeps running", lambda: "Press Ctrl-C" in log.read_text(), 300, log)
        broker_pid = broker.status().pid
        workers += [c for c in children(demo.pid) if c != broker_pid]
        assert broker_pid is not None and alive(broker_pid)
        # the worker and the console
        assert len(workers) == 2 and all(alive(pid) for pid in workers)

        demo.send_signal(signum)
        demo.wait(120)
        assert "Stopping what the demo started" in log.read_text()
        wait_for(
            "the worker and the console stopped", lambda: not any(map(alive, workers)), 30, log
        )
        wait_for("the broker stopped", lambda: not alive(broker_pid), 30, log)
        assert not broker.status().running
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in filter(alive, workers):  # what a demo that failed to stop left behind
            os.kill(pid, signal.SIGKILL)
        broker.down()
        shutil.rmtree(broker.run_dir, ignore_errors=True)
