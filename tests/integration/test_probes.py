"""The probes and the signals an SRE pages on, on a real worker of each runtime.

`/readyz` is 503 until the partitions are assigned and restored, then 200; `/livez` goes
red when input waits and nothing is decided for `TOWER_LIVENESS_STALL_S` (a worker made
stuck by tests/faults/stalled_worker.py) and green again once deciding resumes. Neither
needs a token while tokens are configured. With `TOWER_LOG_FORMAT=json` every line the
worker writes is a JSON object.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.contracts.codec import encode_event
from pipeline.web.auth import token_line
from tests.conftest import WorkerProcess
from tests.factories import consent, proposal
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

TOKEN = "probe-test-viewer-" + "t" * 30
#: customer content that must never reach the log at INFO
CONTENT = "secret-offer-" + uuid.uuid4().hex


def get(worker: WorkerProcess, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(worker: WorkerProcess, what: str, check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited:\n{worker.log_tail()}")
        try:
            answer = check()
        except OSError:
            answer = None
        if answer:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"never {what}\n{worker.log_tail()}")


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled series."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_probes_lag_gauges_and_json_logs_of_a_stuck_and_a_resumed_worker(
    tower_settings, worker: WorkerProcess, tmp_path: Path, runtime: str
) -> None:
    s = tower_settings
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line(TOKEN, "viewer", "sre"))
    peer_key = tmp_path / "peer-key"
    peer_key.write_text("k" * 64 + "\n")
    stall = tmp_path / "stall"
    worker.module = "tests.faults.stalled_worker"
    worker.loglevel = "info"
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_WEB_TOKENS_FILE=str(tokens),
        TOWER_WEB_PEER_KEY_FILE=str(peer_key),
        TOWER_LIVENESS_STALL_S="3",
        TOWER_LOG_FORMAT="json",
        TOWER_FAULT_STALL_FILE=str(stall),
    )
    worker.start()

    # ready: 503 while starting, then 200; no token needed, unlike /healthz
    statuses: list[int] = []

    def ready() -> bool:
        statuses.append(get(worker, "/readyz")[0])
        return statuses[-1] == 200

    wait_for(worker, "ready", ready)
    assert statuses[-1] == 200 and set(statuses) <= {503, 200}, statuses
    # (503 while it joins and restores, when a poll falls in that window: a fast join
    # answers 200 at once; tests/unit/web/test_server.py covers the states)
    status, body = get(worker, "/livez")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert get(worker, "/healthz")[0] == 401
    assert get(worker, "/healthz", TOKEN)[0] == 200

    customers = [f"probe-{i}" for i in range(4)]
    first = [consent(True, customer=c) for c in customers]
    produce(s, s.topics.events, [(e.customer_id.encode(), encode_event(e, "json")) for e in first])
    audit = {"audit": s.topics.audit}
    consume_until(s, audit, lambda seen: len(seen["audit"]) >= len(first), settle=0)

    # stuck: input waits and nothing is decided; /livez goes red within the stall time
    stall.touch()
    sent = list(first)

    def red() -> tuple[int, str] | None:
        e = proposal(customers[len(sent) % 4], content=CONTENT, channel="email")
        produce(s, s.topics.events, [(e.customer_id.encode(), encode_event(e, "json"))])
        sent.append(e)
        answer = get(worker, "/livez")
        return answer if answer[0] == 503 else None

    _, body = wait_for(worker, "stalled", red)
    assert json.loads(body) == {"status": "stalled" if runtime == "faust" else "blocked"}
    assert get(worker, "/readyz")[0] == 200  # still assigned: ready, not live
    text = get(worker, "/metrics", TOKEN)[1]
    lags = [
        float(v)
        for v in re.findall(
            rf'tower_input_lag_records{{partition="\d+",topic="{s.topics.events}"}} (\S+)', text
        )
    ]
    if runtime == "faust":  # the transactional loop is the one stuck: its gauges are too
        assert sum(lags) > 0, text
        ages = re.findall(r"tower_input_oldest_undecided_age_seconds{[^}]*} (\S+)", text)
        assert max(float(a) for a in ages) > 0
    for name in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_objects_collected_total",
    ):
        assert name in text
    assert (metric(text, "tower_rebalances_total") or 0) >= 1
    assert (metric(text, "tower_last_decision_timestamp_seconds") or 0) > 1.7e9

    # resumed: everything is decided and /livez is green again
    stall.unlink()
    wait_for(worker, "live again", lambda: get(worker, "/livez")[0] == 200)
    consume_until(s, audit, lambda seen: len(seen["audit"]) >= len(sent), settle=0)

    def caught_up() -> bool:
        text = get(worker, "/metrics", TOKEN)[1]
        return (
            sum(float(v) for v in re.findall(r"tower_input_lag_records{[^}]*} (\S+)", text)) == 0
            and "tower_input_lag_records{" in text
        )

    wait_for(worker, "caught up", caught_up)
    worker.stop()

    log = (tmp_path / f"worker-{worker.starts}.log").read_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)  # every line parses
        assert {"level", "logger", "message", "time"} <= record.keys(), line
    assert CONTENT not in log and TOKEN not in log
