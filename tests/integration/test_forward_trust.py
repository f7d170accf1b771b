"""A rogue member of the worker's consumer group, on the real broker: it joins with a client
id naming a server of its own, gets partitions, and a request for one of its customers is
refused with a reason instead of being sent there. The rogue's server, which records
every request, receives nothing: no request, no token.

The rogue speaks the transactional runtime's assignor (range); the Faust runtime's group
uses Faust's own assignor, which a plain consumer cannot join, but both runtimes forward
through the same server code (`pipeline/web/server.py`)."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka import Consumer

from pipeline.contracts.partitioning import key_partition
from pipeline.web.auth import token_line

pytestmark = pytest.mark.integration

TOKEN = "rogue-test-operator-" + "t" * 30
ROGUE_HOST = "127.0.0.2"


class Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str]]] = []

    def _record(self) -> None:
        Recorder.seen.append((self.command, self.path, dict(self.headers)))
        body = json.dumps({"served_by": "rogue"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _record

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def rogue_server() -> Iterator[int]:
    Recorder.seen = []
    server = ThreadingHTTPServer((ROGUE_HOST, 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_rogue_group_member_gets_no_request_and_no_token(
    tower_settings, worker, tmp_path, rogue_server
):
    tokens, key = tmp_path / "tokens", tmp_path / "peer-key"
    tokens.write_text(token_line(TOKEN, "operator", "rogue-test"))
    key.write_text(secrets.token_hex(32) + "\n")
    worker.extra_env.update(
        TOWER_RUNTIME="transactional",
        TOWER_WEB_TOKENS_FILE=str(tokens),
        TOWER_WEB_PEER_KEY_FILE=str(key),
        TOWER_WEB_OPEN_METRICS="true",
    )
    worker.start()
    base = f"http://127.0.0.1:{worker.web_port}"
    for _ in range(240):
        try:
            status, health = get(f"{base}/healthz")
        except OSError:
            status, health = 0, {}
        if status == 200 and len(health.get("partitions", ())) == tower_settings.partitions:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the worker never owned every partition:\n" + worker.log_tail())

    client_id = f"rogue@http://{ROGUE_HOST}:{rogue_server}"
    assigned: list[int] = []
    rogue = Consumer(
        {
            "bootstrap.servers": tower_settings.bootstrap,
            "group.id": tower_settings.app_id,
            "client.id": client_id,
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "session.timeout.ms": 10_000,
        }
    )
    stop = threading.Event()

    def stay_in_the_group() -> None:
        topics = tower_settings.topics
        rogue.subscribe(  # both topics the worker reads: range then splits them alike
            [topics.events, topics.wakeups],
            on_assign=lambda c, ps: assigned.extend(
                p.partition for p in ps if p.topic == topics.events
            ),
        )
        while not stop.is_set():
            rogue.poll(0.2)

    member = threading.Thread(target=stay_in_the_group, daemon=True)
    member.start()
    try:
        mine: set[int] = set()
        for _ in range(240):
            status, health = get(f"{base}/healthz")
            mine = set(health.get("partitions", ()))
            if health.get("ready") and assigned and mine and not mine & set(assigned):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the rogue never got partitions (worker: {mine}, rogue: {assigned})")
        customer = next(
            c
            for c in (f"cust-{i}" for i in range(1000))
            if key_partition(c.encode(), tower_settings.partitions) in set(assigned)
        )
        for path in (f"/api/v1/customers/{customer}/context", f"/api/customers/{customer}"):
            for _ in range(60):  # 503 while the worker's view of the group catches up
                status, body = get(base + path)
                if status != 503:
                    break
                time.sleep(0.5)
            assert status == 502, (status, body)
            assert body["reason"] == "untrusted_owner"
            assert "not a trusted peer" in body["detail"]
            assert ROGUE_HOST not in json.dumps(body)  # internal addresses stay in the log
        assert Recorder.seen == []  # no request, so no token, reached the rogue
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert 'tower_forward_refused_total{reason="not_a_peer"}' in metrics
        log = worker.log_tail(400)
        assert log.count(f"not forwarding to the group member with client id '{client_id}'") == 1
        assert customer not in log
    finally:
        stop.set()
        member.join(10)
        rogue.close()
