"""A real Prometheus scrapes a real worker: the experience ratios come out as scripted.

The script: 12 customers with one conversation each. 10 are answered by AI, 3 of those are
handed to a human, 2 are handled by humans only; all 12 are resolved, 6 after exactly 300 s
and 6 after exactly 1800 s (bucket edges, so histogram_quantile is exact). 3 customers write
again a day after their resolution (repeat contacts), a 4th after 8 days (outside the
window). So: containment 7/10, repeat contact rate 3/12, p50 300 s, p90 1620 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.policy import DAY_MS
from tests import tools
from tests.conftest import free_port
from tests.factories import T0, proposal, signal
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
S = 1000
TTR_S = [300, 1800] * 6
CSAT = ["5", "5", "4", "4", "5", "4", "5", "2", "3", "1"]  # 0-6 contained, 7-9 handed off
REPEAT_AFTER = {0: DAY_MS, 1: DAY_MS, 7: DAY_MS, 2: 8 * DAY_MS}


def scripted_journeys() -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for i, ttr in enumerate(TTR_S):
        c, conv = f"cust-{i:02d}", f"conv-{i:02d}"

        def on(ev: AgentEvent, conv: str = conv) -> AgentEvent:
            return replace(ev, conversation_id=conv, channel="chat")

        resolved_at = T0 + ttr * S
        if i < 10:
            events.append(on(signal("message_received", c, T0, text="my order?")))
            answer = proposal(
                c, T0 + S, agent="care-bot", department="service", channel="chat",
                action="answer", category="service", ai_generated=True,
            )  # fmt: skip
            events.append(on(answer))
            if i >= 7:
                events.append(on(signal("handoff_to_human", c, T0 + 2 * S, reason="asked")))
        else:
            events.append(signal("case_opened", c, T0, case_id=conv))
        events.append(signal("case_resolved", c, resolved_at, case_id=conv))
        if i < 10:
            events.append(signal("csat", c, resolved_at + 60 * S, score=CSAT[i], case_id=conv))
        if i in REPEAT_AFTER:
            again = signal("message_received", c, resolved_at + REPEAT_AFTER[i], text="again")
            events.append(on(again, f"{conv}-again"))
    return events


class PrometheusServer:
    """`prometheus` on a free port scraping the worker every second; always stopped."""

    def __init__(self, binary: str, tmp: Path, target: str) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "journey-tower",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def query(self, expr: str) -> float | None:
        """The instant value of a single-series expression (None if it has no value)."""
        result = self.get("/api/v1/query", query=expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_until(self, expectations: dict[str, float], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            try:
                last = {e: self.query(e) for e in expectations}
            except OSError:
                last = {}
            if last == expectations:
                return
            time.sleep(0.5)
        log = self.log.read_text(errors="replace")[-2000:]
        raise TimeoutError(f"Prometheus never showed {expectations}; last {last}\n{log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture(scope="module")
def prometheus() -> str:
    """The prometheus binary: skipped without it, failed under CI (tests.tools)."""
    return tools.tool("prometheus", "apt-get install -y prometheus")


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_prometheus_computes_the_scripted_experience_metrics(
    prometheus, tower_settings, worker, tmp_path, runtime
):
    events = scripted_journeys()
    worker.extra_env["TOWER_RUNTIME"] = runtime
    worker.start()
    prom = PrometheusServer(prometheus, tmp_path, f"127.0.0.1:{worker.web_port}")
    try:
        produce(
            tower_settings.bootstrap,
            tower_settings.topics.events,
            [(e.customer_id.encode(), encode_event(e, "json")) for e in events],
        )
        consume_until(
            tower_settings.bootstrap,
            {"audit": tower_settings.topics.audit},
            lambda seen: len(seen["audit"]) >= len(events),
            settle=0,
        )
        # the final counter values, once Prometheus has scraped them
        prom.wait_until(
            {
                "sum(tower_resolutions_total)": 12.0,
                "sum(tower_conversations_resolved_total)": 10.0,
                "sum(tower_repeat_contacts_total)": 3.0,
                "sum(tower_csat_score_count)": 10.0,
                "sum(tower_time_to_resolution_seconds_count)": 12.0,
            }
        )
        containment = prom.query(
            'sum(tower_conversations_resolved_total{contained="true"})'
            " / sum(tower_conversations_resolved_total)"
        )
        repeat_rate = prom.query("sum(tower_repeat_contacts_total) / sum(tower_resolutions_total)")
        ttr = "sum by (le) (tower_time_to_resolution_seconds_bucket)"
        p50 = prom.query(f"histogram_quantile(0.5, {ttr})")
        p90 = prom.query(f"histogram_quantile(0.9, {ttr})")
        mean_ttr = prom.query(
            "sum(tower_time_to_resolution_seconds_sum)"
            " / sum(tower_time_to_resolution_seconds_count)"
        )
        csat = {
            flag: prom.query(
                f'sum(tower_csat_score_sum{{contained="{flag}"}})'
                f' / sum(tower_csat_score_count{{contained="{flag}"}})'
            )
            for flag in ("true", "false")
        }

        assert containment == pytest.approx(0.7)
        assert repeat_rate == pytest.approx(0.25)
        assert p50 == pytest.approx(300.0)
        assert p90 == pytest.approx(1620.0)  # 900 + 900 * (0.9 * 12 - 6) / 6
        assert mean_ttr == pytest.approx(1050.0)
        assert csat == pytest.approx({"true": 32 / 7, "false": 2.0})
        # the repository's rule file loads and evaluates in a real server
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert "tower:containment_rate:ratio_rate1h" in health
        assert set(health.values()) <= {"ok", "unknown"}
    finally:
        prom.stop()
