"""The overview's experience metrics: fed from the read model's new rows only, shown with
their trend, every bucket present."""

from __future__ import annotations

from pathlib import Path

from pipeline.console import html, views
from pipeline.console.experience import ExperienceFeed
from pipeline.console.store import Batch, Store, audit_row
from tests.unit.console.records import NOW, audit

M = 60_000


def add(store: Store, rows: list[dict], start: int) -> None:
    b = Batch()
    for i, r in enumerate(rows):
        b.audit.append(audit_row(0, start + i, r))
    b.next_offsets[("audit", 0)] = start + len(rows)
    store.add(b)


def purchase(i: int, at: int, customer: str = "ana") -> dict:
    return audit(
        i, customer, kind="signal", outcome="recorded", at=at,
        signal={"type": "purchase", "attributes": {"amount": "10"}},
    )  # fmt: skip


def test_the_feed_reads_only_rows_added_since_its_last_read(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "console.duckdb")
    add(store, [audit(0, at=NOW), purchase(1, NOW + M)], 0)
    feed = ExperienceFeed(store)
    assert not feed.ready and feed.position is None
    assert feed.catch_up(now=NOW + 2 * M) == 2 and feed.ready and feed.position == 2
    assert feed.catch_up(now=NOW + 2 * M) == 0
    add(store, [purchase(2, NOW + 2 * M, "ben")], 2)
    assert feed.catch_up(now=NOW + 3 * M) == 1
    assert feed.trends.records == 3


def test_after_a_restart_the_feed_starts_at_its_horizon(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "console.duckdb")
    old = NOW - 60 * 86_400_000
    add(store, [purchase(0, old), purchase(1, NOW)], 0)
    feed = ExperienceFeed(store)
    assert feed.catch_up(now=NOW + M) == 1
    empty = Store.open(None)
    nothing = ExperienceFeed(empty)
    assert nothing.catch_up(now=NOW) == 0
    add(empty, [purchase(0, NOW)], 0)
    assert nothing.catch_up(now=NOW) == 1


def test_the_overview_shows_each_metric_with_its_trend_and_every_bucket() -> None:
    store = Store.open(None)
    add(store, [audit(0, at=NOW), purchase(1, NOW + M), purchase(2, NOW + 5 * M, "ben")], 0)
    feed = ExperienceFeed(store)
    feed.catch_up(now=NOW + 10 * M)
    d = views.overview(store, "hour", now=NOW + 10 * M, feed=feed)
    metrics = {m["metric"]: m for m in d["experience"]["metrics"]}
    assert set(metrics) == {
        "containment", "csat_contained", "csat_not_contained", "repeat_contacts",
        "sentiment_shift", "time_to_resolution", "channel_switching", "cost_to_serve",
        "assisted_conversion", "churn_risk",
    }  # fmt: skip
    conversion = metrics["assisted_conversion"]
    assert conversion["value"] == 0.0 and conversion["previous"] is None
    assert conversion["direction"] == "unknown"
    assert len(conversion["series"]) == 61  # every minute of the hour, and the current one
    assert metrics["cost_to_serve"]["series"][0]["value"] == 0.0
    page = html.overview_page(d, None)
    assert "Assisted conversion" in page and "Experience metrics" in page


def test_decisions_per_minute_are_zero_filled() -> None:
    store = Store.open(None)
    add(store, [audit(0, at=NOW), audit(1, at=NOW + 3 * M)], 0)
    d = views.overview(store, "hour", now=NOW + 5 * M + 40_000)
    points = d["decisions_per_minute"]["approved"]
    assert len(points) == 61
    values = [p["per_minute"] for p in points]
    assert values.count(0.0) == 59 and sum(values) == 2
    assert [p["t"] for p in points][:2] == [0, 20_000]  # the first bucket starts before the window


def test_a_computing_feed_says_so() -> None:
    store = Store.open(None)
    d = views.overview(store, "day", now=NOW, feed=ExperienceFeed(store))
    assert d["experience"] == {"computing": True, "metrics": []}
    assert "Being computed" in html.overview_page(d, None)


def test_line_charts_break_at_buckets_without_a_value() -> None:
    svg = html.line_chart({"x": [(0, 1.0), (1, None), (2, 2.0), (3, 3.0)]}, 3, "x")
    assert svg.count("<circle") == 1 and svg.count("<polyline") == 1


def test_the_feed_replays_in_insertion_order_without_sorting(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "console.duckdb")
    for start in range(0, 3000, 1000):
        add(store, [purchase(i, NOW + i, f"c{i % 7}") for i in range(start, start + 1000)], start)
    seen: list[int] = []

    class Recording:
        keep_ms = 86_400_000
        records = skipped = 0

        def add(self, record: dict) -> None:
            seen.append(record["processed_at"] - NOW)

    feed = ExperienceFeed(store, Recording())  # type: ignore[arg-type]
    assert feed.catch_up(now=NOW + 3000) == 3000
    assert seen == list(range(3000))
    assert store.query("SELECT current_setting('preserve_insertion_order')") == [(True,)]
