"""The report page embeds the report as `tower report` writes it: the same HTML file (its
own strict policy: no script, framed by the console only) and the same JSON."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pipeline.console import html
from pipeline.console.app import CONTENT_SECURITY_POLICY, REPORT_FILE_POLICY, build_app
from pipeline.console.store import Batch, Store, audit_row
from pipeline.web.auth import TokenFile, WebSecurity
from pipeline.web.report_html import render_html
from tests.unit.console.records import HOSTILE, NOW, audit
from tests.unit.console.test_action_audit import Actions
from tests.unit.web.test_auth import VIEWER_TOKEN, tokens_file

AS_VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def store_with_exposures() -> Store:
    store = Store.open(None)
    b = Batch()
    rows = [
        audit(i, f"c{i}", agent=HOSTILE, arms=[{"experiment": f"holdout:{HOSTILE}", "arm": arm}],
              outcome="approved" if arm == "treatment" else "withheld", at=NOW + i)
        for i, arm in enumerate(["treatment", "control"] * 3)
    ]  # fmt: skip
    for i, r in enumerate(rows):
        b.audit.append(audit_row(0, i, r))
    b.next_offsets[("audit", 0)] = len(rows)
    store.add(b)
    return store


def test_the_report_file_and_json_are_tower_reports(tmp_path: Path) -> None:
    got: dict[str, Any] = {}

    async def main() -> None:
        security = WebSecurity(tokens=TokenFile(tokens_file(tmp_path)))
        app = build_app(store_with_exposures(), security, Actions())
        async with TestClient(TestServer(app)) as client:
            for _ in range(200):
                body = await (await client.get("/report.json", headers=AS_VIEWER)).json()
                if body["rows"]:
                    break
                await asyncio.sleep(0.05)
            got["json"] = body
            r = await client.get("/report.html", headers=AS_VIEWER)
            got["html"], got["html_headers"] = await r.text(), r.headers
            r = await client.get("/report", headers=AS_VIEWER)
            got["page"], got["page_headers"] = await r.text(), r.headers
            got["anonymous"] = (await client.get("/report.html")).status

    asyncio.run(main())
    rows = got["json"]["rows"]
    assert rows and all("next_step" not in r for r in rows)
    assert {r["experiment"] for r in rows} == {f"holdout:{HOSTILE}"}
    assert got["html"].startswith("<!doctype html>") and "<style>" in got["html"]
    assert HOSTILE not in got["html"] and "&lt;script&gt;" in got["html"]
    headers = got["html_headers"]
    assert headers["Content-Security-Policy"] == REPORT_FILE_POLICY
    assert "script-src" not in REPORT_FILE_POLICY and headers["X-Frame-Options"] == "SAMEORIGIN"
    assert got["page_headers"]["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert '<iframe class="report" src="/report.html" sandbox' in got["page"]
    assert got["anonymous"] == 401
    same = render_html(rows, generated_at="x", source="y")
    assert same.count("<section>") == got["html"].count("<section>")


def test_the_report_page_links_the_file_and_the_json() -> None:
    page = html.report_page(
        {"rows": [], "records_counted": 0, "seconds": 0, "computed_at": "2026-01-01"}, None
    )
    assert 'href="/report.html"' in page and 'href="/report.json"' in page
