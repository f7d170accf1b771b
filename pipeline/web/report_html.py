"""`tower report` as a page and as a terminal table: the lift of each experiment, per metric.

Journey owners look rather than read: a bar per arm and a dot with its interval on either side
of a zero line tell at a glance whether an agent helps, hurts, or needs more customers, where a
column of signed decimals does not. The page is one self-contained file (inline CSS and SVG, no
script, no external URL) so that it can be mailed or opened from a laptop without the network.
The terminal table formats the same rows the same way.

Everything shown that comes from the data (experiment and agent names come from events) is
HTML-escaped. Only the standard library is imported: the look copies `pipeline.web.pages`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PROPORTIONS = frozenset({"conversion", "unsubscribe", "complaint", "repeat_contact"})
LOWER_IS_BETTER = frozenset({"unsubscribe", "complaint", "repeat_contact"})
NO_DATA = "not enough data"
TEXT_COLUMNS = (
    "experiment",
    "metric",
    "n_t",
    "n_c",
    "treatment",
    "control",
    "lift",
    "95% CI",
    "verdict",
)
VERDICT_CLASS = {"helps": "helps", "hurts": "hurts", "can't tell yet": "unsure"}
VERDICT_INK = {"helps": "#1f8a44", "hurts": "#c0392b", "unsure": "#7a8496"}

# The chart's geometry, in SVG user units (the SVG is drawn at this width, in pixels).
WIDTH = 720
HEAD_H = 26
ROW_H = 66
ARM_LABEL_X = 196  # arm names end here (right-aligned)
BAR_X, BAR_W = 202, 130  # the longer bar of each row is BAR_W long
AXIS_X0, AXIS_X1 = 420, 610  # the lift axis
VERDICT_X = 624
TREATMENT_INK, CONTROL_INK = "#3b6fd8", "#a4acba"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:10px 20px}
header h1{font-size:18px;margin:0}header p{margin:2px 0;color:#c9d1de;font-size:13px}
header p.note{color:#ffd98a}
main{padding:16px 20px;max-width:1000px}section{background:#fff;border:1px solid #dde1e8;
  border-radius:6px;padding:10px 14px;margin-bottom:14px}
h2{font-size:15px;margin:0 0 4px}table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#5a6478;font-size:12px}td.num,th.num{text-align:right;
  font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;
  background:#e4e7ec;white-space:nowrap}
.helps{background:#d3f2dc;color:#135c2a}.hurts{background:#fbd9d9;color:#7d1a1a}
.unsure{background:#e4e7ec;color:#3d4656}
.muted{color:#7a8496}.small{font-size:11px}td.name{white-space:nowrap}
.legend dt{font-weight:600;margin-top:6px}.legend dd{margin:0 0 0 14px}
td.na{white-space:normal;color:#7a8496;font-style:italic}
svg{display:block;max-width:100%;height:auto}
svg text{font-family:system-ui,sans-serif}
"""


def is_proportion(metric: str) -> bool:
    return metric in PROPORTIONS


def _places(*percents: float | None) -> int:
    """One decimal, two when every number is below 1 (so 0.31% and 0.29% stay apart)."""
    return 2 if all(abs(p) < 1 for p in percents if p is not None) else 1


def format_value(metric: str, value: float | None) -> str:
    """A rate as a percentage ("30.1%", "0.31%"), a mean with two decimals ("12.34")."""
    if value is None:
        return NO_DATA
    if not is_proportion(metric):
        return f"{value:.2f}"
    percent = value * 100
    return f"{percent:.{_places(percent)}f}%"


def format_lift(metric: str, value: float | None, places: int | None = None) -> str:
    """A difference of rates in percentage points ("+10.2 pp"), of means signed ("+1.23").

    `places` fixes the decimals of percentage points (else chosen from the value)."""
    if value is None:
        return NO_DATA
    if not is_proportion(metric):
        return f"{value:+.2f}"
    points = value * 100
    return f"{points:+.{_places(points) if places is None else places}f} pp"


def format_interval(
    metric: str, low: float | None, high: float | None, places: int | None = None
) -> str:
    """ "+2.1 to +18.3 pp" for rates, "-0.40 to +1.25" for means."""
    if low is None or high is None:
        return NO_DATA
    if not is_proportion(metric):
        return f"{low:+.2f} to {high:+.2f}"
    lo, hi = low * 100, high * 100
    places = _places(lo, hi) if places is None else places
    return f"{lo:+.{places}f} to {hi:+.{places}f} pp"


def lift_and_interval(
    metric: str, lift: float | None, low: float | None, high: float | None
) -> tuple[str, str]:
    """The lift and its interval with the same decimals ("+0.9 pp", "+0.1 to +1.7 pp")."""
    places = _places(*(None if v is None else v * 100 for v in (lift, low, high)))
    return format_lift(metric, lift, places), format_interval(metric, low, high, places)


def _count(n: Any) -> str:
    return "-" if n is None else f"{int(n):,}"


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    metric = str(row["metric"])
    return (
        str(row["experiment"]),
        metric,
        _count(row.get("n_treatment")),
        _count(row.get("n_control")),
        format_value(metric, _float(row.get("treatment"))),
        format_value(metric, _float(row.get("control"))),
        *lift_and_interval(
            metric, _float(row.get("lift")), _float(row.get("ci_low")), _float(row.get("ci_high"))
        ),
        str(row.get("verdict", "")),
    )


def text_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """An aligned table for the terminal: names left-aligned, numbers right-aligned, every line
    the same width (the verdict column is padded too)."""
    cells = [TEXT_COLUMNS, *(_text_cells(r) for r in rows)]
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    right = {2, 3, 4, 5, 6, 7}
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]


# --- the page -------------------------------------------------------------------------------


def _by_experiment(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The rows of each experiment, experiments in the order the rows first mention them."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["experiment"]), []).append(row)
    return groups


def _verdict_class(verdict: Any) -> str:
    return VERDICT_CLASS.get(str(verdict), "unsure")


def _badge(verdict: Any) -> str:
    return f'<span class="badge {_verdict_class(verdict)}">{escape(str(verdict))}</span>'


def _arm(rows: Sequence[Mapping[str, Any]], key: str, fallback: str) -> str:
    """The arm's name if every row of the experiment names the same one."""
    names = {str(r.get(key)) for r in rows if r.get(key)}
    return names.pop() if len(names) == 1 else fallback


def _direction(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def _table(rows: Sequence[Mapping[str, Any]], arm_t: str, arm_c: str) -> str:
    t, c = escape(arm_t), escape(arm_c)
    head = (
        "<tr><th>metric</th>"
        f'<th class="num">n {t}</th><th class="num">n {c}</th>'
        f'<th class="num">{t}</th><th class="num">{c}</th>'
        '<th class="num">lift</th><th class="num">95% interval</th><th>verdict</th></tr>'
    )
    body = []
    for row in rows:
        metric = str(row["metric"])
        cells = _text_cells(row)
        body.append(
            f'<tr data-metric="{escape(metric)}"><td class="name">{escape(metric)}'
            f'<br><span class="muted small">{_direction(metric)}</span></td>'
            + "".join(
                f'<td class="num na">{NO_DATA}</td>'
                if cell == NO_DATA
                else f'<td class="num">{escape(cell)}</td>'
                for cell in cells[2:8]
            )
            + f"<td>{_badge(row.get('verdict', ''))}</td></tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _nice_span(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def _axis_label(metric: str, value: float) -> str:
    if is_proportion(metric):
        return f"{value * 100:+.10g} pp"
    return f"{value:+.10g}"


def _num(x: float) -> str:
    return f"{x:.1f}"


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    """An SVG text element; `body` must be escaped already, attribute names use _ for -."""
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{_num(x)}" y="{_num(y)}"{extra}>{body}</text>'


def _bars(row: Mapping[str, Any], y0: float) -> list[str]:
    metric = str(row["metric"])
    arms = (
        (str(row.get("arm_treatment", "treatment")), _float(row.get("treatment")), TREATMENT_INK),
        (str(row.get("arm_control", "control")), _float(row.get("control")), CONTROL_INK),
    )
    top = max((v for _, v, _ in arms if v is not None and v > 0), default=0.0)
    parts = []
    for i, (arm, value, ink) in enumerate(arms):
        y = y0 + 12 + i * 18
        parts.append(
            _text(
                ARM_LABEL_X, y + 11, escape(arm), text_anchor="end", font_size="11", fill="#5a6478"
            )
        )
        if value is None:
            parts.append(
                _text(BAR_X, y + 11, NO_DATA, font_size="11", fill="#7a8496", font_style="italic")
            )
            continue
        width = BAR_W * max(value, 0.0) / top if top > 0 else 0.0
        parts.append(
            f'<rect x="{BAR_X}" y="{_num(y)}" width="{_num(max(width, 1.0))}" height="14" '
            f'rx="2" fill="{ink}"><title>{escape(arm)}: '
            f"{escape(format_value(metric, value))}</title></rect>"
        )
        parts.append(
            _text(BAR_X + width + 5, y + 11, escape(format_value(metric, value)), font_size="12")
        )
    return parts


def _lift(row: Mapping[str, Any], y0: float) -> list[str]:
    metric = str(row["metric"])
    lift, low, high = (_float(row.get(k)) for k in ("lift", "ci_low", "ci_high"))
    mid = (AXIS_X0 + AXIS_X1) / 2
    if lift is None:
        return [
            f'<line x1="{AXIS_X0}" y1="{y0 + 44}" x2="{AXIS_X1}" y2="{y0 + 44}" stroke="#dde1e8"/>',
            _text(
                mid,
                y0 + 36,
                NO_DATA,
                text_anchor="middle",
                font_size="12",
                fill="#7a8496",
                font_style="italic",
            ),
        ]
    reach = max(abs(v) for v in (lift, low, high) if v is not None)
    span = _nice_span(reach * 1.1) if reach > 0 else (0.01 if is_proportion(metric) else 1.0)

    def x(value: float) -> float:
        return mid + (AXIS_X1 - AXIS_X0) / 2 * max(-1.0, min(1.0, value / span))

    ink = VERDICT_INK[_verdict_class(row.get("verdict"))]
    axis_y, dot_y = y0 + 48, y0 + 32
    parts = [
        f'<line x1="{AXIS_X0}" y1="{axis_y}" x2="{AXIS_X1}" y2="{axis_y}" stroke="#a4acba"/>',
        *(
            f'<line x1="{end}" y1="{axis_y - 3}" x2="{end}" y2="{axis_y + 3}" stroke="#a4acba"/>'
            for end in (AXIS_X0, AXIS_X1)
        ),
        f'<line x1="{_num(mid)}" y1="{dot_y - 8}" x2="{_num(mid)}" y2="{axis_y + 3}" '
        'stroke="#1d2433" stroke-width="1.2" stroke-dasharray="3 2"/>',
        _text(
            AXIS_X0, axis_y + 13, escape(_axis_label(metric, -span)), font_size="10", fill="#5a6478"
        ),
        _text(mid, axis_y + 13, "0", text_anchor="middle", font_size="10", fill="#5a6478"),
        _text(
            AXIS_X1,
            axis_y + 13,
            escape(_axis_label(metric, span)),
            text_anchor="end",
            font_size="10",
            fill="#5a6478",
        ),
    ]
    lift_text, interval_text = lift_and_interval(metric, lift, low, high)
    title = f"lift {lift_text}, 95% interval {interval_text}"
    if low is not None and high is not None:
        x_low, x_high = x(low), x(high)
        parts += [
            f'<line x1="{_num(x_low)}" y1="{dot_y}" x2="{_num(x_high)}" y2="{dot_y}" '
            f'stroke="{ink}" stroke-width="2"/>',
            *(
                f'<line x1="{_num(end)}" y1="{dot_y - 5}" x2="{_num(end)}" y2="{dot_y + 5}" '
                f'stroke="{ink}" stroke-width="2"/>'
                for end in (x_low, x_high)
            ),
        ]
    else:
        right_of_zero = x(lift) > mid
        parts.append(
            _text(
                AXIS_X0 if right_of_zero else AXIS_X1,
                dot_y + 4,
                "no interval yet",
                text_anchor="start" if right_of_zero else "end",
                font_size="10",
                fill="#7a8496",
                font_style="italic",
            )
        )
    label_x = max(AXIS_X0 + 28, min(AXIS_X1 - 28, x(lift)))
    parts += [
        f'<circle cx="{_num(x(lift))}" cy="{dot_y}" r="5" fill="{ink}" stroke="#fff">'
        f"<title>{escape(title)}</title></circle>",
        _text(
            label_x,
            dot_y - 10,
            escape(lift_text),
            text_anchor="middle",
            font_size="12",
            font_weight="600",
            fill=ink,
            stroke="#fff",
            stroke_width="3",
            paint_order="stroke",
        ),
    ]
    return parts


def _chart(experiment: str, rows: Sequence[Mapping[str, Any]], arm_t: str, arm_c: str) -> str:
    height = HEAD_H + ROW_H * len(rows) + 4
    parts = [
        f'<svg width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(f"lift of {arm_t} over {arm_c} per metric in {experiment}")}">',
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        _text(8, 16, "metric", font_size="12", font_weight="600", fill="#5a6478"),
        _text(
            ARM_LABEL_X - 60,
            16,
            "each arm (longer bar = larger value)",
            font_size="12",
            font_weight="600",
            fill="#5a6478",
        ),
        _text(
            (AXIS_X0 + AXIS_X1) / 2,
            16,
            "lift and 95% interval",
            text_anchor="middle",
            font_size="12",
            font_weight="600",
            fill="#5a6478",
        ),
        _text(VERDICT_X, 16, "verdict", font_size="12", font_weight="600", fill="#5a6478"),
    ]
    for i, row in enumerate(rows):
        y0 = HEAD_H + i * ROW_H
        metric = str(row["metric"])
        verdict = str(row.get("verdict", ""))
        if i % 2 == 0:
            parts.append(f'<rect x="0" y="{y0}" width="{WIDTH}" height="{ROW_H}" fill="#f7f8fa"/>')
        parts += [
            _text(8, y0 + 28, escape(metric), font_size="13", font_weight="600"),
            _text(8, y0 + 44, _direction(metric), font_size="11", fill="#7a8496"),
            *_bars(row, y0),
            *_lift(row, y0),
            _text(
                VERDICT_X,
                y0 + 36,
                escape(verdict),
                font_size="12",
                font_weight="600",
                fill=VERDICT_INK[_verdict_class(verdict)],
            ),
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def _section(experiment: str, rows: Sequence[Mapping[str, Any]]) -> str:
    arm_t = _arm(rows, "arm_treatment", "treatment")
    arm_c = _arm(rows, "arm_control", "control")
    return (
        f'<section data-experiment="{escape(experiment)}"><h2>{escape(experiment)}</h2>'
        f'<p class="muted">arm <b>{escape(arm_t)}</b> compared with arm <b>{escape(arm_c)}</b>'
        "</p>\n"
        f"{_chart(experiment, rows, arm_t, arm_c)}\n{_table(rows, arm_t, arm_c)}</section>"
    )


LEGEND = """<section class="legend"><h2>How to read this</h2><dl>
<dt>Lift</dt><dd>The treatment arm's value minus the control arm's. For rates (conversion,
unsubscribe, complaint, repeat contact) it is in percentage points: 12% against 10% is a lift
of +2 pp. For revenue and satisfaction (csat) it is in the metric's own units.</dd>
<dt>95% interval</dt><dd>The range the true lift most likely lies in, given how many customers
each arm had. Few customers give a wide interval. In the chart the dot is the lift, the whisker
its interval and the dashed line zero; every metric has its own scale, labelled at both
ends.</dd>
<dt>Verdict</dt><dd><b>helps</b>: the whole interval lies on the good side of zero, so
the treatment is very likely better. <b>hurts</b>: it lies wholly on the bad side. <b>can't tell
yet</b>: the interval includes zero (or there is none yet), so more customers are needed before
deciding. For unsubscribes, complaints and repeat contacts lower is better, so a negative lift
there helps.</dd>
</dl></section>"""


def render_html(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str = "Journey Tower — impact report",
    generated_at: str,
    source: str,
    notes: Sequence[str] = (),
) -> str:
    """The whole page: a header, one section (chart and table) per experiment, a legend."""
    groups = _by_experiment(rows)
    sections = (
        "\n".join(_section(name, group) for name, group in groups.items())
        if groups
        else '<section><p class="muted">No experiment has exposed customers yet.</p></section>'
    )
    note_lines = "".join(f'<p class="note">{escape(note)}</p>' for note in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<header><h1>{escape(title)}</h1>
<p>generated {escape(generated_at)} from {escape(source)}</p>{note_lines}</header>
<main>
{sections}
{LEGEND}
</main></body></html>
"""
