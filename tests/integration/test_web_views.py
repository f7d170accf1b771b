"""The journey owners' pages in a real browser, served by a real worker on the real broker.

A scripted journey for two customers is streamed in; what the pages show is checked against
what the pure core decides for the same events. Screenshots land in var/screenshots (a build
folder; copy one to docs/ to refresh its picture).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.contracts.partitioning import key_partition
from pipeline.core.arbitration import decide
from pipeline.core.decision import Decision
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.state import EMPTY_STATE, CustomerState
from tests.conftest import WorkerProcess
from tests.factories import T0, consent, proposal, signal
from tests.kafka_io import produce

pytestmark = pytest.mark.integration

#: the browser tests' screenshots: a build folder (copy one to docs/ to refresh its picture)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
M = 60_000

with contextlib.suppress(ImportError):  # without it, tests.tools.chromium says what to do
    from playwright.sync_api import Page, expect

#: a test that drives a browser: skipped without one, failed under CI (tests.tools)
needs_browser = pytest.mark.usefixtures("chromium_path")


def journey(ana: str, ben: str) -> list[AgentEvent]:
    """Ana: opted in to email marketing, two marketing emails out, a third merged, a channel
    without consent, a case that stops selling, a service answer, a replayed event. Ben:
    withdrew email marketing, gets a service SMS."""
    first = proposal(
        ana, T0 + M, event_id=f"{ana}-p1", agent="promo-bot", trigger="spring-sale",
        content="20% off shoes", asserts={"price": "49.90"},
    )  # fmt: skip
    return [
        consent(True, "email", "marketing", ana, T0),
        first,
        proposal(ana, T0 + 2 * M, event_id=f"{ana}-p2", agent="upsell-bot", trigger="new-in"),
        proposal(ana, T0 + 3 * M, event_id=f"{ana}-p3", channel="sms", trigger="sms-sale"),
        proposal(ana, T0 + 4 * M, event_id=f"{ana}-p4", agent="winback-bot", trigger="spring-sale"),
        signal("case_opened", ana, T0 + 5 * M, case_id="case-7"),
        proposal(ana, T0 + 6 * M, event_id=f"{ana}-p5", trigger="summer"),
        proposal(
            ana,
            T0 + 7 * M,
            event_id=f"{ana}-p6",
            agent="care-bot",
            department="service",
            channel="chat",
            action="answer",
            category="service",
            content="Your parcel left",
        ),
        replace(first),
        consent(False, "email", "marketing", ben, T0),
        proposal(ben, T0 + M, event_id=f"{ben}-p1", trigger="spring-sale"),
        proposal(
            ben,
            T0 + 2 * M,
            event_id=f"{ben}-p2",
            agent="care-bot",
            department="service",
            channel="sms",
            category="service",
            content="Your parcel left",
        ),
    ]


def decided(events: list[AgentEvent]) -> tuple[list[Decision], dict[str, CustomerState]]:
    states: dict[str, CustomerState] = {}
    out = []
    for ev in events:
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, DEFAULT_POLICY, ev.occurred_at
        )
        out.append(d)
    return out, states


def stream(settings, events: list[AgentEvent]) -> None:
    records = [(e.customer_id.encode(), encode_event(e, "json")) for e in events]
    produce(settings.bootstrap, settings.topics.events, records)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 404 for unknown customers, 503 while rebalancing
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"error": body.decode(errors="replace")}


def wait_until_assigned(url: str, polls: int = 120) -> int:
    """The status of `url` once it is no longer 503 (partitions not yet assigned)."""
    for _ in range(polls):
        status = get_json(url)[0]
        if status != 503:
            return status
        time.sleep(0.5)
    return 503


def table_rows(page: Page, testid: str) -> list[list[str]]:
    return page.locator(f"[data-testid={testid}] tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))"
    )


RUNTIMES = ["faust", "transactional"]


@needs_browser
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_live_page_and_customer_page_show_the_journey(tower_settings, worker, browser, runtime):
    events = journey("ana-1", "ben-2")
    decisions, states = decided(events)
    outcomes = Counter(d.outcome for d in decisions)
    assert {"approved", "suppressed", "merged", "duplicate", "recorded"} <= set(outcomes)

    worker.extra_env["TOWER_RUNTIME"] = runtime
    worker.start()
    worker.metrics_text()  # the web server is up
    base = f"http://127.0.0.1:{worker.web_port}"
    # before anything is decided (the worker has written no state yet) a customer is unknown;
    # 503 until the worker has its partitions
    assert wait_until_assigned(f"{base}/api/customers/ana-1") == 404
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(base + "/")
    expect(page.locator("#status")).to_have_text("live", timeout=30_000)
    stream(tower_settings, events)

    # decisions appear as they are made, without reloading the page
    rows = page.locator("tr.decision")
    expect(rows).to_have_count(len(events), timeout=90_000)
    expect(page.locator("#policy-version")).to_have_text(DEFAULT_POLICY.policy_version)
    shown = rows.evaluate_all("rows => rows.map(r => Array.from(r.cells, c => c.innerText))")
    # time, customer, event, agent, channel, outcome, rule, reason
    assert Counter((r[1], r[5], r[6], r[7]) for r in shown) == Counter(
        (d.customer_id, d.outcome, d.rule or "-", d.reason) for d in decisions
    )
    assert shown[0][1:3] == ["ben-2", f"proposal {events[-1].event_id}"]  # newest on top
    # the counters add up
    expect(page.locator("#total")).to_have_text(str(len(events)))
    for outcome, n in outcomes.items():
        expect(page.locator(f'.count[data-outcome="{outcome}"]')).to_have_attribute(
            "data-count", str(n)
        )
    for rule, n in Counter(d.rule or "-" for d in decisions).items():
        expect(page.locator(f'.count[data-rule="{rule}"]')).to_have_attribute("data-count", str(n))
    SHOTS.mkdir(parents=True, exist_ok=True)
    if runtime == "faust":  # one set of screenshots for the docs
        page.screenshot(path=str(SHOTS / "live-view.png"), full_page=True)

    # a person clicks a customer in the feed
    page.locator("tr.decision a", has_text="ana-1").first.click()
    expect(page.locator("#customer-id")).to_have_text("ana-1")
    ana = states["ana-1"]
    assert table_rows(page, "consents") == [["email:marketing", "granted", "2026-01-01 00:00:00"]]
    caps = {r[1]: r[2] for r in table_rows(page, "caps")}
    assert caps == {"channel email": "2 of 3", "channel chat": "1 of 3"}
    assert [r[:3] for r in table_rows(page, "facts")] == [["price", "49.90", "promo-bot"]]
    assert [r[0] for r in table_rows(page, "open-cases")] == list(ana.open_cases) == ["case-7"]
    expect(page.get_by_test_id("offer")).to_have_text("No active offer.")

    timeline = table_rows(page, "timeline")  # newest first
    ana_decisions = [d for d in decisions if d.customer_id == "ana-1"]
    assert [(r[5], r[6], r[7], r[8]) for r in reversed(timeline)] == [
        (d.outcome, d.rule or "-", d.reason, d.action_id or "-") for d in ana_decisions
    ]
    assert timeline[-1][1:5] == ["signal", "crm", "-", "consent_changed channel=email "
                                 "purpose=marketing granted=true"]  # fmt: skip
    assert "marketing message" in timeline[-2][4]
    if runtime == "faust":
        page.screenshot(path=str(SHOTS / "customer-view.png"), full_page=True)

    # the same data as JSON; an unknown customer is a 404
    status, data = get_json(f"{base}/api/customers/ben-2")
    assert status == 200
    assert data["consents"] == [{"scope": "email:marketing", "granted": False, "at": T0}]
    assert [t["outcome"] for t in data["timeline"]] == ["recorded", "suppressed", "approved"]
    assert get_json(f"{base}/api/customers/nobody")[0] == 404


def customers_on_every_partition(partitions: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(key_partition(f"cust-{n}".encode(), partitions), f"cust-{n}")
        n += 1
    return [found[p] for p in range(partitions)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_customer_page_is_answered_by_the_worker_that_owns_the_customer(
    tower_settings, worker, tmp_path, runtime
):
    """Two workers share the partitions; asking either one for any customer gives the
    owner's answer (forwarded to the owner the consumer group names), so some answers
    must have been forwarded."""
    names = customers_on_every_partition(tower_settings.partitions)
    pairs = list(zip(names[::2], names[1::2], strict=True))
    events = [e for ana, ben in pairs for e in journey(ana, ben)]
    _, states = decided(events)
    (tmp_path / "b").mkdir()
    other = WorkerProcess(tower_settings, tmp_path / "b", tmp_path / "b" / "worker")
    workers = [worker, other]
    try:
        for w in workers:
            w.extra_env["TOWER_RUNTIME"] = runtime
            w.start()
            w.metrics_text()
        stream(tower_settings, events)
        urls = {f"http://127.0.0.1:{w.web_port}" for w in workers}

        def answers() -> dict[tuple[str, str], tuple[int, dict]]:
            return {(u, c): get_json(f"{u}/api/customers/{c}") for u in urls for c in names}

        def settled(got: dict[tuple[str, str], tuple[int, dict]]) -> bool:
            """Every answer complete, and both workers agree on each customer's owner."""
            return all(
                status == 200
                and len(data["timeline"]) == sum(e.customer_id == c for e in events)
                # the feed shows a decision before its state is saved (after the acks)
                and data["events"] == states[c].events
                and data["served_by"] == got[(min(urls), c)][1].get("served_by")
                for (u, c), (status, data) in got.items()
            )

        for _ in range(180):  # until both workers have their partitions and all is decided
            got = answers()
            if settled(got):
                break
            time.sleep(1)
        else:
            pytest.fail(f"answers never settled: {got}\n{worker.log_tail()}\n{other.log_tail()}")

        served_by = {c: got[(min(urls), c)][1]["served_by"] for c in names}
        assert set(served_by.values()) == urls  # each worker owns some customers
        forwarded = [(url, c) for (url, c) in got if served_by[c] != url]
        assert len(forwarded) == len(names)  # every customer was asked of its non-owner too
        for (_url, c), (_, data) in got.items():
            state = states[c]
            assert data["partition"] == key_partition(c.encode(), tower_settings.partitions)
            assert data["events"] == state.events
            assert [f["name"] for f in data["facts"]] == list(state.facts)
            assert [x["scope"] for x in data["consents"]] == list(state.consents)
        # the HTML page is routed the same way
        url, c = forwarded[0]
        with urllib.request.urlopen(f"{url}/customers/{c}", timeout=30) as resp:
            html = resp.read().decode()
        assert f"answered by {served_by[c]}" in html and url != served_by[c]
    finally:
        other.stop()
