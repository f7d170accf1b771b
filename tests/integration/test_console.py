"""The journey owner's console on a real broker and a real worker with simulated traffic:
every page in Chromium, the read model's restart and rebuild, four eyes in the browser
(the proposer cannot approve, a second person can, the worker takes the change, the kill
switch stops the agent), and hostile content that renders inert.

Screenshots (1280 x 900) land in var/screenshots/ (copy one to docs/ to refresh a picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.contracts.codec import encode_event
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from pipeline.web.auth import new_token, token_line
from tests.conftest import REPO, WorkerProcess, free_port
from tests.factories import T0, proposal
from tests.integration.test_web_views import SHOTS, needs_browser
from tests.kafka_io import produce
from tests.policy_signing import Keyring

pytestmark = pytest.mark.integration

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
HOSTILE_AGENT = "evil<img src=x onerror=window.__pwned=1>"
AGENTS = "agents: [winback-bot, upsell-bot, promo-bot, care-bot, notify-bot]\n"
GOVERNED = "version: 2.0.0\n" + AGENTS + "governance:\n  require_approval: true\n"
VIEWPORT = {"width": 1280, "height": 900}
EPOCH_MS = re.compile(r"(?<![\d.])1\d{12}(?![\d.])")
KEYS = Keyring()


@dataclass
class People:
    """Tokens of ana and ben (operators) and vic (viewer); ana's and ben's signing keys."""

    tokens: dict[str, str]
    tokens_file: Path
    keys_dir: Path
    approvers_file: Path


@pytest.fixture
def people(tmp_path: Path) -> People:
    tokens = {name: new_token() for name in ("ana", "ben", "vic")}
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(
        "".join(token_line(t, "viewer" if n == "vic" else "operator", n) for n, t in tokens.items())
    )
    keys = tmp_path / "console-keys"
    keys.mkdir()
    for name in ("ana", "ben"):
        KEYS.private_key_file(keys / f"{name}.key", name)
    approvers = KEYS.approvers_file(tmp_path / "approvers", "ana", "ben")
    return People(tokens, tokens_file, keys, approvers)


@dataclass
class ConsoleProcess:
    """A `tower console` subprocess with the test's settings."""

    settings: Settings
    people: People
    log_dir: Path
    db: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: the worker the console asks for customers' live state
    worker_url: str = ""

    def start(self) -> None:
        s = self.settings
        env = dict(os.environ)
        env.update(
            TOWER_BOOTSTRAP=s.bootstrap,
            TOWER_APP_ID=s.app_id,
            TOWER_CONSOLE_PORT=str(self.port),
            TOWER_CONSOLE_DB=str(self.db),
            TOWER_CONSOLE_KEYS_DIR=str(self.people.keys_dir),
            TOWER_WEB_TOKENS_FILE=str(self.people.tokens_file),
            TOWER_POLICY_APPROVERS_FILE=str(self.people.approvers_file),
            PYTHONPATH=str(REPO),
        )
        if self.worker_url:
            env["TOWER_CONSOLE_WORKER_URL"] = self.worker_url
        for name, value in s.topics.__dict__.items():
            env[f"TOWER_TOPIC_{name.upper()}"] = value
        self.starts += 1
        log = open(self.log_dir / f"console-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.ops.cli", "console"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, how: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(how)
            self.proc.wait(30)

    def log_tail(self) -> str:
        path = self.log_dir / f"console-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])

    def call(self, path: str, who: str = "ana", body: Any = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method="POST" if data else "GET"
        )
        request.add_header("Authorization", f"Bearer {self.people.tokens[who]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError:
            return 0, {}

    def health(self) -> dict[str, Any]:
        return self.call("/healthz")[1]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def console(tower_settings: Settings, people: People, tmp_path: Path) -> Iterator[ConsoleProcess]:
    c = ConsoleProcess(tower_settings, people, tmp_path, tmp_path / "console" / "console.duckdb")
    try:
        yield c
    finally:
        c.stop()


def traffic(settings: Settings, n: int = 1500, seed: int = 5) -> int:
    """Simulated agents' records and a few malformed ones; the count of valid ones."""
    records = AgentSimulator(customers=40, seed=seed).records(n, malformed=8)
    produce(settings.bootstrap, settings.topics.events, [(r.key, r.value) for r in records])
    return sum(r.event is not None for r in records)


def hostile(settings: Settings) -> None:
    events = [
        proposal(
            "hostile-1",
            T0 + 1000 * i,
            event_id=f"h{i}",
            agent=HOSTILE_AGENT,
            trigger=HOSTILE,
            content=HOSTILE,
        )
        for i in range(3)
    ]
    produce(
        settings.bootstrap,
        settings.topics.events,
        [(e.customer_id.encode(), encode_event(e, "json")) for e in events]
        + [(b"hostile-2", HOSTILE.encode())],  # a dead letter whose raw bytes are hostile
    )


def start_worker(worker: WorkerProcess, people: People) -> None:
    worker.extra_env["TOWER_POLICY_APPROVERS_FILE"] = str(people.approvers_file)
    worker.start()
    worker.metrics_text()


def caught_up(console: ConsoleProcess, audit_at_least: int) -> Callable[[], dict[str, int] | None]:
    def check() -> dict[str, int] | None:
        h = console.health()
        records = h.get("records") or {}
        ok = h.get("caught_up") and records.get("audit", 0) >= audit_at_least
        return records if ok else None

    return check


def settled(console: ConsoleProcess, audit_at_least: int) -> dict[str, int]:
    """The read model's counts once it holds the records and two looks agree."""
    first = wait_until(caught_up(console, audit_at_least), "the console to read the audit")
    while True:
        time.sleep(1.0)
        again = caught_up(console, audit_at_least)()
        if again == first:
            return first
        first = again


def signed_in(browser: Browser, console: ConsoleProcess, who: str) -> Page:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{console.base}/?token={console.people.tokens[who]}")
    return page


PAGES = ("/", "/agents", "/policy", "/dead-letters", "/report", "/live")


@needs_browser
def test_every_page_on_a_real_worker_with_hostile_content_inert(
    tower_settings, worker, console, people, browser
):
    start_worker(worker, people)
    valid = traffic(tower_settings)
    hostile(tower_settings)
    console.worker_url = f"http://127.0.0.1:{worker.web_port}"
    console.start()
    counts = settled(console, valid + 3)
    assert counts["deadletter"] >= 9, console.log_tail()

    # the experience metrics, replayed from the audit, with a trend and a series each
    def experience() -> dict[str, Any] | None:  # once it replayed every audit record
        x = console.call("/api/console/v1/overview?range=week")[1].get("experience") or {}
        done = not x.get("computing", True) and x["records_replayed"] >= counts["audit"]
        return x if done else None

    replayed = wait_until(experience, "the experience metrics")
    metrics = {m["metric"]: m for m in replayed["metrics"]}
    assert len(metrics) == 10
    assert metrics["cost_to_serve"]["value"] > 0
    assert all(len(m["series"]) == len(metrics["churn_risk"]["series"]) for m in metrics.values())

    page = signed_in(browser, console, "ana")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in PAGES:
        page.goto(console.base + path)
        expect(page.locator("h1")).to_be_visible()
        assert page.evaluate("window.__pwned") is None, path
        assert not EPOCH_MS.search(page.inner_text("main")), path
        name = "overview" if path == "/" else path.strip("/")
        page.screenshot(path=str(SHOTS / f"console-{name}.png"))
        status, data = console.call(f"/api/console/v1/{'overview' if path == '/' else name}")
        assert status == 200 and data["api_version"] == "console-v1", (path, data)

    # the overview counts what the read model holds
    overview = console.call("/api/console/v1/overview?range=week")[1]
    assert sum(overview["totals"].values()) == counts["audit"]
    page.goto(console.base + "/?range=week")
    expect(page.locator("table.experience")).to_contain_text("Containment")
    expect(page.locator("table.experience")).to_contain_text("Assisted conversion")
    page.screenshot(path=str(SHOTS / "console-overview-week.png"), full_page=True)
    # the report as `tower report --html` writes it, framed in the report page
    page.goto(console.base + "/report")
    framed = page.frame_locator("iframe.report")
    expect(framed.locator("h1")).to_contain_text("impact report", timeout=30_000)
    page.screenshot(path=str(SHOTS / "console-report-framed.png"), full_page=True)
    assert page.evaluate("window.__pwned") is None
    # hostile names and content are shown as text, never run
    page.goto(console.base + "/live?signals=1")
    expect(page.locator("main")).to_contain_text(HOSTILE_AGENT)
    page.goto(console.base + "/dead-letters")
    expect(page.locator("main")).to_contain_text(HOSTILE.encode().hex()[:40])
    # a customer: searched by id, in readable dates, with no epoch milliseconds
    page.goto(console.base + "/customers")
    page.fill("input[name=id]", "hostile-1")
    page.click("text=Show")
    expect(page.locator("main")).to_contain_text(HOSTILE)
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(SHOTS / "console-customer.png"))
    page.goto(console.base + "/customers/cust-00001")
    expect(page.locator("h1")).to_have_text("Customer cust-00001")
    # its live state from the worker, beside the audit's timeline
    expect(page.locator("main")).to_contain_text("Now, as the worker holds this customer")
    expect(page.locator("main")).to_contain_text("Frequency caps")
    page.screenshot(path=str(SHOTS / "console-customer-live.png"), full_page=True)
    assert not EPOCH_MS.search(page.inner_text("main"))
    status, seen = console.call("/api/console/v1/customers/cust-00001")
    assert status == 200 and seen["live_state"]["available"] is True, seen.get("live_state")
    # an unknown customer says so
    response = page.goto(console.base + "/customers/nobody-here")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("no such customer")
    # the live feed filters and folds signals
    live = console.call("/api/console/v1/live?outcome=approved")[1]
    assert live["signals_folded"] == 0 and live["decisions"]
    assert {d["outcome"] for d in live["decisions"]} == {"approved"}
    assert console.call("/api/console/v1/live")[1]["signals_folded"] > 0
    # a viewer reads but cannot act; nobody reads without a token
    assert console.call("/api/console/v1/agents", "vic")[0] == 200
    assert console.call("/api/console/v1/policy/approve", "vic", {"version": "x"})[0] == 403
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(console.base + "/api/console/v1/overview", timeout=10)
    assert refused.value.code == 401


def test_the_read_model_resumes_after_a_restart_and_rebuilds_from_the_topics(
    tower_settings, worker, console, people
):
    start_worker(worker, people)
    valid = traffic(tower_settings, 1200, seed=11)
    console.start()
    first = settled(console, valid)
    agents = console.call("/api/console/v1/agents")[1]

    # restart: resumes from its stored offsets, nothing read twice
    console.stop()
    console.start()
    assert settled(console, valid) == first
    more = traffic(tower_settings, 600, seed=12)
    grown = settled(console, first["audit"] + more)

    # killed and its file deleted: rebuilt from the topics, equal to the run before
    console.stop(signal.SIGKILL)
    shutil.rmtree(console.db.parent)
    console.start()
    assert settled(console, grown["audit"]) == grown
    again = console.call("/api/console/v1/agents")[1]
    assert sum(a["proposals"] for a in again["agents"]) >= sum(
        a["proposals"] for a in agents["agents"]
    )
    fresh = ConsoleProcess(
        tower_settings, people, console.log_dir, console.log_dir / "fresh.duckdb"
    )
    fresh.start()
    try:
        assert settled(fresh, grown["audit"]) == grown
        assert fresh.call("/api/console/v1/agents")[1] == again
    finally:
        fresh.stop()


def pending_version(console: ConsoleProcess) -> str:
    pending = console.call("/api/console/v1/policy")[1]["pending"]
    assert len(pending) == 1, pending
    return str(pending[0]["policy_version"])


def worker_policy(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/healthz", timeout=10) as r:
        return str(json.loads(r.read())["policy_version"])


@needs_browser
def test_four_eyes_in_the_browser_and_the_kill_switch_stops_an_agent(
    tower_settings, worker, console, people, browser
):
    start_worker(worker, people)
    console.start()
    wait_until(lambda: console.health().get("caught_up"), "the console to start")

    # ana proposes a governed policy; she cannot approve it, ben can
    status, said = console.call("/api/console/v1/policy/propose", "ana", {"document": GOVERNED})
    assert status == 200, said
    version = wait_until(lambda: console.call("/api/console/v1/policy")[1]["pending"], "pending")
    version = version[0]["policy_version"]
    ana = signed_in(browser, console, "ana")
    ana.goto(console.base + "/policy")
    ana.click("text=Approve")
    expect(ana.locator("form .result").first).to_contain_text("refused", timeout=30_000)
    expect(ana.locator("form .result").first).to_contain_text("cannot also approve")
    ben = signed_in(browser, console, "ben")
    ben.goto(console.base + "/policy")
    ben.screenshot(path=str(SHOTS / "console-policy-pending.png"))
    ben.click("text=Approve")
    expect(ben.locator("form .result").first).to_contain_text("done: approved", timeout=30_000)
    # the worker takes it, and the console's history names both
    wait_until(lambda: worker_policy(worker) == version, "the worker to apply the change")
    history = wait_until(
        lambda: console.call("/api/console/v1/policy")[1]["history"], "the policy history"
    )
    assert (history[0]["proposed_by"], history[0]["approved_by"]) == ("ana", "ben")
    # each of those console actions is on the audit topic, apart from the governance records

    def console_actions() -> list[tuple[str, str, bool]] | None:
        done = console.call("/api/console/v1/policy")[1].get("console_actions") or []
        got = [(a["by"], a["action"], "refused" in a["what"]) for a in done]
        return got if ("ben", "approve", False) in got else None

    actions = wait_until(console_actions, "the console actions in the read model")
    assert {("ana", "propose", False), ("ana", "approve", True)} <= set(actions)

    # ana switches promo-bot off (a proposal), ben approves; its proposals stop
    ana.goto(console.base + "/policy")
    ana.locator("tr", has_text="promo-bot").locator("button").click()
    expect(ana.locator("tr", has_text="promo-bot").locator(".result")).to_contain_text(
        "done: proposed", timeout=30_000
    )
    switch = wait_until(lambda: console.call("/api/console/v1/policy")[1]["pending"], "pending")
    switch_version = switch[0]["policy_version"]
    assert (
        console.call("/api/console/v1/policy/approve", "ana", {"version": switch_version})[0] == 409
    )
    status, said = console.call(
        "/api/console/v1/policy/approve", "ben", {"version": switch_version}
    )
    assert status == 200, said
    wait_until(
        lambda: worker_policy(worker) == switch_version, "the worker to switch promo-bot off"
    )
    produce(
        tower_settings.bootstrap,
        tower_settings.topics.events,
        [(b"kc-1", encode_event(proposal("kc-1", T0, event_id="k1", agent="promo-bot"), "json"))],
    )

    def stopped() -> bool:
        rows = console.call("/api/console/v1/live?agent=promo-bot&rule=kill_switch")[1]
        return bool(rows.get("decisions"))

    wait_until(stopped, "promo-bot's proposal to be stopped by the kill switch")

    def switched_off() -> bool:  # the read model follows the policies topic
        agents = {a["agent"]: a for a in console.call("/api/console/v1/agents")[1]["agents"]}
        return agents["promo-bot"]["kill_switch"].startswith("off")

    wait_until(switched_off, "the agents page to show promo-bot switched off")
    ana.goto(console.base + "/agents")
    ana.screenshot(path=str(SHOTS / "console-agents-killed.png"))
