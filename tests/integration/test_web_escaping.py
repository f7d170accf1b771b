"""Markup in events stays text in a real browser, on a worker that requires tokens.

Agents send whatever they like: a proposal's content, an agent name, an event id or a
customer id may be `<script>` or `<img onerror=...>`. The live page and the customer page
must show it literally and run none of it. The person signs in once with `?token=`; the
pages' own requests then carry the cookie.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pipeline.web.auth import token_line
from tests.factories import T0, consent, proposal
from tests.integration.test_web_views import needs_browser, stream

pytestmark = pytest.mark.integration

M = 60_000
VIEWER_TOKEN = "browser-viewer-" + "b" * 32
CUSTOMER = "eve<svg onload=window.__pwned=6>"
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=2">'
FACT = "<b onmouseover=window.__pwned=3>49.90</b>"
EVENT_ID = '<img src=y onerror="window.__pwned=4">'
AGENT = "<script>window.__pwned=5</script>bot"


def hostile_events() -> list:
    return [
        consent(True, customer=CUSTOMER, at=T0),
        proposal(CUSTOMER, T0 + M, event_id="p-script", content=SCRIPT, asserts={"price": FACT}),
        proposal(CUSTOMER, T0 + 2 * M, event_id=EVENT_ID, agent=AGENT, content=IMG),
    ]


def status_of(url: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        json.loads(exc.read())  # every refusal is the API's JSON
        return exc.code


@needs_browser
@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_markup_in_events_is_shown_as_text_and_never_run(
    tower_settings, worker, browser, tmp_path, runtime
):
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line(VIEWER_TOKEN, "viewer", "browser-test"))
    peer_key = tmp_path / "peer-key"
    peer_key.write_text("k" * 64 + "\n")
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_WEB_TOKENS_FILE=str(tokens),
        TOWER_WEB_PEER_KEY_FILE=str(peer_key),
        TOWER_WEB_OPEN_METRICS="true",  # the fixture's readiness probe reads /metrics
    )
    worker.start()
    worker.metrics_text()
    base = f"http://127.0.0.1:{worker.web_port}"
    quoted = urllib.parse.quote(CUSTOMER, safe="")
    customer_api = f"{base}/api/customers/{quoted}"
    assert status_of(customer_api, None) == 401
    for _ in range(120):  # 503 until the worker has its partitions
        if status_of(customer_api, VIEWER_TOKEN) != 503:
            break
        time.sleep(0.5)

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/?token={VIEWER_TOKEN}")
    assert page.url == base + "/"  # the token left the address at once
    cookie = next(c for c in context.cookies() if c["name"] == "tower_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_text("live", timeout=30_000)
    stream(tower_settings, hostile_events())
    rows = page.locator("tr.decision")
    expect(rows).to_have_count(3, timeout=90_000)

    feed = page.locator("#decisions")
    for text in (CUSTOMER, f"proposal {EVENT_ID}", AGENT):
        expect(feed).to_contain_text(text)
    assert feed.locator("script, img, svg, b").count() == 0
    page.wait_for_timeout(500)  # an onerror would have fired by now
    assert page.evaluate("window.__pwned") is None

    # a person clicks the customer: the page is rendered on the server, every value escaped
    page.locator("tr.decision a").first.click()
    expect(page.locator("#customer-id")).to_have_text(CUSTOMER)
    timeline = page.get_by_test_id("timeline")
    for _ in range(30):  # the timeline is read from the audit topic
        if timeline.locator("tbody tr").count() == 3:
            break
        page.wait_for_timeout(1000)
        page.reload()
    for text in (f"marketing message: {SCRIPT}", f"marketing message: {IMG}", AGENT):
        expect(timeline).to_contain_text(text)
    expect(page.get_by_test_id("facts")).to_contain_text(FACT)
    assert page.title() == f"Customer {CUSTOMER} - Journey Tower"
    assert page.locator("main script, main img, main svg, main b[onmouseover]").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None

    # a browser without the cookie gets nothing but the refusal
    stranger = browser.new_context().new_page()
    answer = stranger.goto(f"{base}/customers/{quoted}")
    assert answer is not None and answer.status == 401
    assert CUSTOMER not in stranger.content()
    context.close()


@pytest.mark.parametrize("runtime", ["faust", "transactional"])
def test_a_worker_without_tokens_listens_only_on_loopback_and_says_so(worker, runtime):
    worker.extra_env.update(
        TOWER_RUNTIME=runtime,
        TOWER_WEB_HOST="0.0.0.0",
        TOWER_WEB_URL=f"http://127.0.0.1:{worker.web_port}",  # a wildcard URL is refused
    )
    worker.start()
    assert worker.proc is not None
    assert worker.proc.wait(120) != 0  # refused at start, before consuming anything
    log = worker.log_tail(200)
    assert "refusing to serve the web pages on 0.0.0.0 with authentication off" in log
    assert "TOWER_WEB_TOKENS_FILE" in log and "TOWER_WEB_HOST=127.0.0.1" in log

    worker.extra_env["TOWER_WEB_HOST"] = "127.0.0.1"
    worker.start()
    worker.metrics_text()  # open, as without tokens everything is
    log = worker.log_tail(200)
    assert "web authentication is off" in log and f"only on 127.0.0.1:{worker.web_port}" in log
