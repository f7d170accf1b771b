"""The `tower report` page and terminal table, from rows as `tower report --json` gives them."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from pipeline.web.report_html import (
    NO_DATA,
    format_interval,
    format_lift,
    format_value,
    lift_and_interval,
    render_html,
    text_table,
)

METRICS = ("conversion", "revenue", "unsubscribe", "complaint", "repeat_contact", "csat")
VOID = {"meta", "br", "hr", "img", "input", "link"}


def row(
    experiment: str = "control_group", metric: str = "conversion", **over: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "experiment": experiment,
        "metric": metric,
        "arm_treatment": "treatment",
        "arm_control": "holdout" if experiment.startswith("holdout:") else "control",
        "n_treatment": 4210,
        "n_control": 1050,
        "treatment": 0.301,
        "control": 0.199,
        "lift": 0.102,
        "ci_low": 0.074,
        "ci_high": 0.130,
        "verdict": "helps",
    }
    return base | over


ROWS = [
    row("control_group", "conversion"),
    row("control_group", "revenue", treatment=18.42, control=15.10, lift=3.32, ci_low=1.05,
        ci_high=5.59),
    row("control_group", "unsubscribe", treatment=0.021, control=0.012, lift=0.009, ci_low=0.001,
        ci_high=0.017, verdict="hurts"),
    row("control_group", "complaint", treatment=0.0031, control=0.0029, lift=0.0002,
        ci_low=-0.0016, ci_high=0.0020, verdict="can't tell yet"),
    row("control_group", "repeat_contact", treatment=0.112, control=0.141, lift=-0.029,
        ci_low=-0.052, ci_high=-0.006),
    row("control_group", "csat", n_treatment=612, n_control=148, treatment=4.21, control=4.05,
        lift=0.16, ci_low=-0.05, ci_high=0.37, verdict="can't tell yet"),
    *(
        row("holdout:retention-bot", m, n_treatment=980, n_control=102, lift=0.02, ci_low=-0.04,
            ci_high=0.09, verdict="can't tell yet")
        for m in METRICS[:-1]
    ),
    row("holdout:retention-bot", "csat", n_treatment=3, n_control=0, treatment=4.33, control=None,
        lift=None, ci_low=None, ci_high=None, verdict="can't tell yet"),
]  # fmt: skip


def page(rows: list[dict[str, Any]] = ROWS, **kwargs: Any) -> str:
    options: dict[str, Any] = {
        "generated_at": "2026-03-02 09:14 UTC",
        "source": "audit topic 'audit' on 127.0.0.1:9092, 12,345 records",
    }
    return render_html(rows, **(options | kwargs))


class TagBalance(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-3:]}"
        self.open.pop()


def parsed(html: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(html)
    parser.close()
    assert parser.open == []
    return parser


@pytest.mark.parametrize(
    "rows", [ROWS, ROWS[:1], [], ROWS[-1:]], ids=["sample", "one row", "no rows", "no data"]
)
def test_the_page_parses_with_balanced_tags_and_one_chart_per_experiment(
    rows: list[dict[str, Any]],
) -> None:
    tags = parsed(page(rows)).seen
    assert tags.count("svg") == len({r["experiment"] for r in rows})
    assert tags.count("section") == max(1, len({r["experiment"] for r in rows})) + 1  # + legend
    assert "script" not in tags


def test_the_page_names_every_experiment_and_metric_experiments_in_first_mention_order() -> None:
    interleaved = [row("b", "conversion"), row("a", "revenue"), row("b", "csat")]
    html = page(interleaved)
    assert html.index("<h2>b</h2>") < html.index("<h2>a</h2>")
    html = page()
    for experiment in ("control_group", "holdout:retention-bot"):
        assert f'<section data-experiment="{experiment}"><h2>{experiment}</h2>' in html
    for metric in METRICS:
        assert html.count(f'<tr data-metric="{metric}">') == 2


def test_the_page_is_self_contained_and_declares_utf8() -> None:
    html = page(notes=["3 records could not be decoded"])
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert '<meta charset="utf-8">' in html
    legend = html[html.index("How to read this") :]
    assert all(f"<dt>{term}</dt>" in legend for term in ("Lift", "95% interval", "Verdict"))


EVIL = "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("rows", "kwargs"),
    [
        ([row(f"holdout:{EVIL}")], {}),
        ([row(arm_treatment=EVIL)], {}),
        ([row(arm_control=EVIL)], {}),
        ([row(metric=EVIL)], {}),
        ([row(verdict=EVIL)], {}),
        (ROWS, {"notes": [EVIL]}),
        (ROWS, {"source": EVIL}),
        (ROWS, {"title": EVIL}),
    ],
    ids=["experiment", "treatment arm", "control arm", "metric", "verdict", "notes", "source",
         "title"],
)  # fmt: skip
def test_everything_from_the_data_is_escaped(
    rows: list[dict[str, Any]], kwargs: dict[str, Any]
) -> None:
    html = page(rows, **kwargs)
    assert "<script" not in html and "alert(1)</" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    parsed(html)


def test_an_agent_named_like_a_script_shows_only_escaped() -> None:
    html = page([row("holdout:<script>alert(1)</script>")])
    assert "<script>" not in html
    assert "<h2>holdout:&lt;script&gt;alert(1)&lt;/script&gt;</h2>" in html
    assert 'data-experiment="holdout:&lt;script&gt;alert(1)&lt;/script&gt;"' in html


def test_missing_values_show_not_enough_data_in_the_table_and_the_chart() -> None:
    html = page([ROWS[-1]])
    table = html[html.index("<table>") :]
    assert table.count(NO_DATA) == 3  # control, lift, interval
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert chart.count(NO_DATA) == 2  # the control bar, the lift
    assert "<circle" not in chart
    assert "None" not in html


def test_a_lift_without_an_interval_is_drawn_without_whisker_and_says_so() -> None:
    html = page([row(ci_low=None, ci_high=None, verdict="can't tell yet")])
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert "<circle" in chart and "no interval yet" in chart
    assert "+10.2 pp" in chart


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"lift": 0.102, "ci_low": 0.074, "ci_high": 0.130}, ("-20 pp", "+20 pp")),
        ({"lift": -0.029, "ci_low": -0.052, "ci_high": -0.006}, ("-10 pp", "+10 pp")),
        ({"lift": 0.0002, "ci_low": -0.0016, "ci_high": 0.0020}, ("-0.5 pp", "+0.5 pp")),
        ({"lift": 0.0, "ci_low": 0.0, "ci_high": 0.0}, ("-1 pp", "+1 pp")),
        ({"metric": "revenue", "lift": 3.32, "ci_low": 1.05, "ci_high": 5.59}, ("-10", "+10")),
        ({"metric": "csat", "lift": 0.16, "ci_low": -0.05, "ci_high": 0.37}, ("-0.5", "+0.5")),
    ],
)
def test_each_lift_axis_is_scaled_to_its_interval_and_labelled_at_both_ends(
    values: dict[str, Any], expected: tuple[str, str]
) -> None:
    chart = page([row(**values)])
    chart = chart[chart.index("<svg") : chart.index("</svg>")]
    for label in expected:
        assert f">{label}</text>" in chart
    assert 'stroke-dasharray="3 2"' in chart  # the zero line


@pytest.mark.parametrize(
    ("verdict", "css"), [("helps", "helps"), ("hurts", "hurts"), ("can't tell yet", "unsure")]
)
def test_verdicts_are_coloured_and_written_out(verdict: str, css: str) -> None:
    html = page([row(verdict=verdict)])
    assert f'<span class="badge {css}">{verdict.replace(chr(39), "&#x27;")}</span>' in html


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("conversion", 0.301, "30.1%"),
        ("conversion", 1.0, "100.0%"),
        ("unsubscribe", 0.0031, "0.31%"),
        ("complaint", 0.0, "0.00%"),
        ("repeat_contact", 0.112, "11.2%"),
        ("revenue", 18.4, "18.40"),
        ("csat", 4.0, "4.00"),
        ("conversion", None, NO_DATA),
        ("revenue", None, NO_DATA),
    ],
)
def test_values_are_percentages_for_rates_and_two_decimals_for_means(
    metric: str, value: float | None, expected: str
) -> None:
    assert format_value(metric, value) == expected


@pytest.mark.parametrize(
    ("metric", "lift", "low", "high", "expected"),
    [
        ("conversion", 0.102, 0.074, 0.130, ("+10.2 pp", "+7.4 to +13.0 pp")),
        ("repeat_contact", -0.029, -0.052, -0.006, ("-2.9 pp", "-5.2 to -0.6 pp")),
        ("unsubscribe", 0.009, 0.001, 0.017, ("+0.9 pp", "+0.1 to +1.7 pp")),
        ("complaint", 0.0002, -0.0016, 0.002, ("+0.02 pp", "-0.16 to +0.20 pp")),
        ("revenue", 3.32, -1.05, 5.59, ("+3.32", "-1.05 to +5.59")),
        ("csat", -0.1, None, None, ("-0.10", NO_DATA)),
        ("conversion", None, None, None, (NO_DATA, NO_DATA)),
    ],
)
def test_lifts_are_percentage_points_for_rates_with_their_interval_alike(
    metric: str,
    lift: float | None,
    low: float | None,
    high: float | None,
    expected: tuple[str, str],
) -> None:
    assert lift_and_interval(metric, lift, low, high) == expected


def test_lift_and_interval_alone_choose_their_own_decimals() -> None:
    assert format_lift("conversion", 0.102) == "+10.2 pp"
    assert format_lift("complaint", 0.0002) == "+0.02 pp"
    assert format_interval("unsubscribe", 0.001, 0.017) == "+0.1 to +1.7 pp"
    assert format_interval("conversion", 0.074, 0.13, places=2) == "+7.40 to +13.00 pp"


def test_the_text_table_is_aligned_with_a_header_and_one_line_per_row() -> None:
    lines = text_table(ROWS)
    assert len(lines) == len(ROWS) + 1
    assert len({len(line) for line in lines}) == 1
    assert lines[0].split() == [
        "experiment", "metric", "n_t", "n_c", "treatment", "control", "lift", "95%", "CI",
        "verdict",
    ]  # fmt: skip
    first = lines[1]
    for cell in ("control_group", "conversion", "4,210", "1,050", "30.1%", "19.9%", "+10.2 pp"):
        assert cell in first
    assert "+7.4 to +13.0 pp" in first and first.rstrip().endswith("helps")
    assert lines[-1].count(NO_DATA) == 3
    # numbers are right-aligned: the lift column ends in the same place on every line
    end = lines[0].index("lift") + len("lift")
    assert all(line[end - 1] != " " and line[end] == " " for line in lines)


@pytest.mark.parametrize("rows", [[], ROWS[:1]], ids=["no rows", "one row"])
def test_the_text_table_of_few_rows_is_still_aligned(rows: list[dict[str, Any]]) -> None:
    lines = text_table(rows)
    assert len(lines) == len(rows) + 1
    assert len({len(line) for line in lines}) == 1
