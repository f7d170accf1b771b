"""`tower report --html` in a real browser: a closed loop's report (no broker needed for the
rows), a chart per experiment, verdicts as text, and agent names from events kept inert.
The screenshot lands in var/screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.web.report_html import render_html
from tests.integration.test_web_views import SHOTS, needs_browser
from tests.unit.core.test_impact import closed_loop

pytestmark = pytest.mark.integration

HOSTILE = "holdout:<img src=x onerror=alert(1)><script>alert(2)</script>"


@needs_browser
def test_the_report_page_shows_a_chart_per_experiment_and_renders_names_inert(
    browser,
    tmp_path: Path,
):
    rows = closed_loop(2_000).rows()
    hostile = [{**r, "experiment": HOSTILE} for r in rows if r["experiment"].endswith("nag-bot")]
    path = tmp_path / "report.html"
    path.write_text(
        render_html(rows + hostile, generated_at="2026-12-02 07:00 UTC", source="closed loop"),
        encoding="utf-8",
    )
    page = browser.new_page(viewport={"width": 960, "height": 1200})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    sections = page.locator("section[data-experiment]")
    assert sections.count() == 3
    names = [sections.nth(i).locator("h2").inner_text() for i in range(3)]
    assert names == ["holdout:winback-bot", "holdout:nag-bot", HOSTILE]
    for i in range(3):
        assert sections.nth(i).locator("svg").count() == 1
    winback = sections.nth(0).inner_text()
    assert "conversion" in winback and "helps" in winback
    assert "hurts" in sections.nth(1).inner_text()
    assert page.locator("img").count() == 0 and page.locator("body script").count() == 0
    assert dialogs == []
    first = page.locator("section[data-experiment]").nth(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(path=str(SHOTS / "impact-report.png"))
    page.close()
