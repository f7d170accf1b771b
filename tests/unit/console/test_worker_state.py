"""The customer page's live state from a worker: consents, caps and holds as the rules see
them, dates in the customer's time zone, the person's own token passed on, and a worker
that cannot be reached said plainly."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.console import html, views
from pipeline.console.app import build_app, with_live_state
from pipeline.console.store import Store
from pipeline.console.worker_state import WorkerState
from pipeline.core.agent_context import agent_context
from pipeline.core.policy import DAY_MS, HOUR_MS, FrequencyCap, HoldWindows, Policy
from pipeline.web.auth import TokenFile, WebSecurity
from tests.factories import T0, consent, decide_all, proposal, signal
from tests.unit.console.test_action_audit import Actions
from tests.unit.web.test_auth import VIEWER_TOKEN, tokens_file

EPOCH_MS = re.compile(r"(?<![\d.])1\d{12}(?![\d.])")
POLICY = Policy(
    caps=(FrequencyCap("two-a-day", limit=2, window_ms=DAY_MS, scope="channel"),),
    holds=HoldWindows(hold_ms={"message": 120_000}),
)


def context() -> dict[str, Any]:
    events = [
        consent(True, "email", "marketing", at=T0),
        signal("profile_updated", timezone="Asia/Tokyo", at=T0 + 1),
        proposal(at=T0 + 100, action="offer"),
        signal("case_opened", case_id="k1", at=T0 + 200),
        proposal(at=T0 + HOUR_MS, trigger="t1", action="message"),
    ]
    _, state = decide_all(events, POLICY)
    return orjson.loads(orjson.dumps(agent_context("c1", state, POLICY, T0 + HOUR_MS + 1)))


def test_the_workers_context_as_a_page_shows_no_epoch_milliseconds() -> None:
    live = views.live_state_view({"available": True, "context": context()})
    assert live["consents"] == [
        {"channel": "email", "purpose": "marketing", "granted": True,
         "at": "2026-01-01 09:00:00 JST"},
    ]  # fmt: skip
    assert [(c["cap"], c["used"], c["limit"], c["window"]) for c in live["caps"]] == [
        ("two-a-day", 1, 2, "1 day")
    ]
    assert [(h["key"], h["until"], h["proposals"]) for h in live["holds"]] == [
        ("t1", "2026-01-01 10:02:00 JST", 1)
    ]
    assert live["open_cases"] == [{"case_id": "k1", "opened": "2026-01-01 09:00:00 JST"}]
    assert live["timezone"] == "Asia/Tokyo"
    page = html.customer_page(
        {"customer_id": "c1", "known": True, "timezone": "Asia/Tokyo", "experiments": [],
         "timeline": [], "live_state": live}, None,
    )  # fmt: skip
    assert "Now, as the worker holds this customer" in page and "two-a-day" in page
    assert "channel email" in page
    assert not EPOCH_MS.search(page)


def test_a_customer_only_the_worker_knows_is_known() -> None:
    unknown = {"customer_id": "c1", "known": False, "message": "no such customer"}
    d = with_live_state(unknown, {"available": True, "context": context()})
    assert d["known"] and d["timeline"] == [] and d["timezone"] == "Asia/Tokyo"
    nobody = with_live_state(unknown, {"available": True, "context": {"known": False}})
    assert nobody["known"] is False


def worker_app(seen: list[str | None]) -> web.Application:
    async def ctx(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.match_info["customer_id"] == "c1":
            return web.json_response(context())
        return web.json_response({"detail": "not this one"}, status=403)

    app = web.Application()
    app.router.add_get("/api/v1/customers/{customer_id}/context", ctx)
    return app


def test_the_console_passes_the_persons_own_token_to_the_worker(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def main() -> None:
        async with TestServer(worker_app(seen)) as worker_server:
            worker = WorkerState(str(worker_server.make_url("")))
            security = WebSecurity(tokens=TokenFile(tokens_file(tmp_path)))
            app = build_app(Store.open(None), security, Actions(), worker=worker)
            async with TestClient(TestServer(app)) as client:
                headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
                r = await client.get("/api/console/v1/customers/c1", headers=headers)
                body = await r.json()
                assert r.status == 200 and body["live_state"]["available"] is True
                assert body["live_state"]["consents"][0]["channel"] == "email"
                r = await client.get("/customers/c2", headers=headers)
                assert r.status == 404

    asyncio.run(main())
    assert seen == [f"Bearer {VIEWER_TOKEN}"] * 2


def test_a_worker_that_cannot_be_reached_is_said_with_the_setting() -> None:
    async def main() -> dict[str, Any]:
        worker = WorkerState("http://127.0.0.1:9", timeout_s=2)
        try:
            return await worker.context("c1", None)
        finally:
            await worker.close()

    answer = asyncio.run(main())
    assert answer["available"] is False and "TOWER_CONSOLE_WORKER_URL" in answer["error"]
    page = html.live_state_block(views.live_state_view(answer))
    assert "cannot reach the worker" in page


def test_a_workers_refusal_is_shown_with_its_status(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        async with TestServer(worker_app([])) as server:
            worker = WorkerState(str(server.make_url("")))
            try:
                return await worker.context("c2", None)
            finally:
                await worker.close()

    answer = asyncio.run(main())
    assert answer["available"] is False and "403: not this one" in answer["error"]


def test_windows_in_words() -> None:
    assert [views._span(ms) for ms in (DAY_MS, 3 * HOUR_MS, 90 * 60_000, 7 * DAY_MS)] == [
        "1 day", "3 hours", "90 minutes", "7 days",
    ]  # fmt: skip
    assert replace(POLICY).caps[0].window_ms == DAY_MS
