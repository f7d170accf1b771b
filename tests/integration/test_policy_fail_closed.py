"""A policy that fails closed, on the real broker: a worker never falls back to the
built-in default because the `policies` topic lost its `active` record (deleted topic, or a
tombstone), and a deployment that requires approval refuses to run without a verified one.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from pipeline.contracts.policy_record import ACTIVE_KEY
from pipeline.core.policy_document import load_policy
from pipeline.kafka import clients
from pipeline.kafka.topics import create_topics, list_topics
from pipeline.settings import Settings
from tests.conftest import WorkerProcess
from tests.kafka_io import produce
from tests.policy_signing import Keyring, signed_record_value

pytestmark = pytest.mark.integration

AGENTS = "agents: [winback-bot, upsell-bot, promo-bot, care-bot, notify-bot]\n"
GOVERNED = "version: 2.0.0\n" + AGENTS + "governance:\n  require_approval: true\n"
KEYS = Keyring()
MISSING = "tower_policy_active_missing 1.0"


def healthz(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return json.loads(resp.read())["policy_version"]
    except OSError:
        return None


def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def governed(worker: WorkerProcess, tmp_path: Path) -> None:
    """The worker verifies four-eyes signatures against ana's and ben's keys."""
    approvers = KEYS.approvers_file(tmp_path / "approvers", "ana", "ben")
    worker.extra_env["TOWER_POLICY_APPROVERS_FILE"] = str(approvers)


def delete_topic(s: Settings, topic: str) -> None:
    admin = AdminClient(clients.connection(s))
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result(30)


@pytest.mark.parametrize(
    "how",
    [
        "tombstone",
        "delete the topic",
        # what compaction leaves of a tombstoned `active` key: no record of it at all
        "recreate the topic empty",
    ],
)
def test_a_vanished_active_record_keeps_the_last_verified_policy(
    tower_settings, worker, tmp_path, how
):
    s = tower_settings
    v2 = load_policy(GOVERNED).policy_version
    governed(worker, tmp_path)
    worker.start()
    wait_until(lambda: healthz(worker.web_port) is not None, "worker up")
    value = signed_record_value(GOVERNED, KEYS, at=int(time.time() * 1000))
    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, value)])
    wait_until(lambda: healthz(worker.web_port) == v2, f"worker switched to {v2}")

    if how == "tombstone":
        produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, None)])  # type: ignore[list-item]
    else:
        delete_topic(s, s.topics.policies)
    if how == "recreate the topic empty":
        # deletion completes in the background: create it again once it is gone
        wait_until(lambda: s.topics.policies not in list_topics(s, 5.0), "topic deleted")
        create_topics(s).raise_for_problems()
    # the running worker keeps the verified policy, and says so
    wait_until(lambda: MISSING in worker.metrics_text(), MISSING)
    assert healthz(worker.web_port) == v2

    # a restarted worker starts on it again, not on the built-in default
    worker.stop()
    if how == "delete the topic":
        # a worker never starts without its topics (it would not create them): it says
        # which, and starts on the kept policy once `tower topics create` made it again
        worker.start()
        assert worker.proc is not None and worker.proc.wait(60) == 6
        out = (worker.log_dir / f"worker-{worker.starts}.log").read_text()
        assert f"topic '{s.topics.policies}' does not exist" in out
        create_topics(s).raise_for_problems()
    worker.start()
    wait_until(lambda: healthz(worker.web_port) is not None, "worker up again")
    assert healthz(worker.web_port) == v2
    assert MISSING in worker.metrics_text()
    log = worker.log_tail(200)
    assert "keeping the last verified policy " + v2 in log


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_a_worker_that_requires_approval_refuses_the_built_in_default(
    tower_settings, worker, tmp_path, runtime
):
    governed(worker, tmp_path)
    worker.extra_env["TOWER_POLICY_REQUIRE_APPROVAL"] = "true"
    worker.extra_env["TOWER_RUNTIME"] = runtime
    worker.start()
    assert worker.proc is not None
    code = worker.proc.wait(120)  # the old worker ran on the default: it never exits
    assert code != 0
    out = (worker.log_dir / f"worker-{worker.starts}.log").read_text()
    assert "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(
        "Error: TOWER_POLICY_REQUIRE_APPROVAL is set but no approved policy is in force "
        "(the built-in default, 1.0.0+"
    ), out
