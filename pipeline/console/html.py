"""The console's pages: server-rendered HTML with server-rendered SVG charts.

Everything that came from a record (agent names, reasons, content, customer ids) passes
through `esc` before it reaches a page, so hostile text renders as text. No script runs
but `console.js` (the approve, reject and propose buttons post JSON), no style but
`console.css`: the Content-Security-Policy allows only the console's own two files.
Colours are the Okabe-Ito palette, told apart with every common colour-vision deficiency;
each chart also has its numbers in a table.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#8C6D1F")
OUTCOME_COLOURS = {
    "approved": "#009E73",
    "suppressed": "#D55E00",
    "merged": "#0072B2",
    "deferred": "#E69F00",
    "escalated": "#CC79A7",
    "withheld": "#56B4E9",
    "recorded": "#8C6D1F",
    "held": "#000000",
    "duplicate": "#999999",
}
NAV = (
    ("/", "Overview"),
    ("/agents", "Agents"),
    ("/policy", "Policy"),
    ("/dead-letters", "Dead letters"),
    ("/customers", "Customers"),
    ("/report", "Report"),
    ("/live", "Live"),
)

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1a1a1a;background:#fafafa}
header{background:#12263a;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;
 align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;padding:.2rem .4rem;border-radius:3px}
header a[aria-current]{background:#fff;color:#12263a}
header .who{margin-left:auto;font-size:.9rem;opacity:.9}
main{max-width:1240px;margin:0 auto;padding:1rem 1.2rem}
h1{font-size:1.4rem;margin:.4rem 0 1rem}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;margin:.3rem 0 1rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
svg{max-width:100%;height:auto}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.7rem 1rem;margin-bottom:1rem}
.muted{color:#555}
.bad{color:#a33}
.ok{color:#1b6e3a}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-all;background:#f2f2f2;padding:.4rem;margin:0}
.legend span{display:inline-block;margin-right:1rem}
form.inline{display:inline}
button{font:inherit;padding:.2rem .7rem;cursor:pointer}
input,select{font:inherit;padding:.15rem .3rem}
.result{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#333}
iframe.report{width:100%;height:900px;border:1px solid #ddd;background:#fff}
"""

SCRIPT = """
document.querySelectorAll('form[data-post]').forEach(function (form) {
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var body = {};
    new FormData(form).forEach(function (v, k) { body[k] = v; });
    var out = form.querySelector('.result') || document.getElementById('result');
    fetch(form.getAttribute('data-post'), {
      method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function (sj) {
        var msg = sj[1].message || sj[1].error || JSON.stringify(sj[1]);
        if (out) { out.textContent = (sj[0] < 300 ? 'done: ' : 'refused: ') + msg; }
      });
  });
});
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _colour(name: str, i: int) -> str:
    return OUTCOME_COLOURS.get(name, PALETTE[i % len(PALETTE)])


def page(title: str, current: str, body: str, who: str | None = None) -> str:
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>{esc(label)}</a>'
        for href, label in NAV
    )
    signed = f'<span class="who">signed in as {esc(who)}</span>' if who else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Journey Tower console</title>"
        '<link rel="stylesheet" href="/console.css"></head><body>'
        f"<header><strong>Journey Tower</strong><nav>{nav}</nav>{signed}</header>"
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        '<script src="/console.js"></script></body></html>'
    )


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()
) -> str:
    nums = set(numeric)
    head = "".join(
        f"<th{' class=n' if i in nums else ''}>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in nums else ''}>{esc(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def legend(names: Sequence[str]) -> str:
    return (
        '<p class="legend">'
        + "".join(
            '<span><svg width="12" height="12" aria-hidden="true">'
            f'<rect width="12" height="12" fill="{_colour(n, i)}"/></svg> {esc(n)}</span>'
            for i, n in enumerate(names)
        )
        + "</p>"
    )


def _segments(pts: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Runs of points with a value: a point without one (no denominator) breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in pts:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    span: float,
    label: str,
    width: int = 580,
    height: int = 220,
    with_legend: bool = True,
) -> str:
    """Lines of (x in 0..span, y) per series name; x is time since the window's start. A
    y of None is a gap in the line; a y of 0 is drawn (the views zero-fill empty buckets)."""
    left, bottom, top, right = 44, 22, 10, 10
    w, h = width - left - right, height - top - bottom
    values = [y for pts in series.values() for _, y in pts if y is not None]
    ymax = max([*values, 0]) or 1
    ymin = min([*values, 0])
    yspan = (ymax - ymin) or 1

    def px(x: float, y: float) -> str:
        return f"{left + w * x / (span or 1):.1f},{top + h - h * (y - ymin) / yspan:.1f}"

    parts = [
        f'<svg role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    steps = 4 if height >= 120 else 1  # a sparkline labels only its bottom and top
    for i in range(steps + 1):
        y = top + h - h * i / steps
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{ymin + yspan * i / steps:.3g}</text>"
        )
    for i, (name, pts) in enumerate(series.items()):
        colour = _colour(name, i)
        for run in _segments(pts):
            if len(run) == 1:
                cx, cy = px(*run[0]).split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
            else:
                coords = " ".join(px(x, y) for x, y in run)
                parts.append(
                    f'<polyline fill="none" stroke-width="2" stroke="{colour}" points="{coords}"/>'
                )
    parts.append(
        f'<text x="{left}" y="{height - 5}">start</text>'
        f'<text x="{left + w}" y="{height - 5}" text-anchor="end">now</text>'
    )
    parts.append("</svg>")
    return "".join(parts) + (legend(list(series)) if with_legend else "")


def bar_chart(items: Sequence[tuple[str, float]], label: str, width: int = 580) -> str:
    """Horizontal bars, one per (name, value)."""
    row, left = 22, 170
    height = max(row * len(items), row) + 6
    vmax = max([v for _, v in items] or [1]) or 1
    parts = [
        f'<svg role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    for i, (name, value) in enumerate(items):
        y = i * row + 3
        bar = (width - left - 60) * value / vmax
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{esc(name[:26])}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{bar:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        parts.append(f'<text x="{left + bar + 4:.1f}" y="{y + 14}">{value:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def range_links(base: str, current: str) -> str:
    return (
        "<p>"
        + " · ".join(
            f"<strong>last {r}</strong>"
            if r == current
            else f'<a href="{base}?range={r}">last {r}</a>'
            for r in ("hour", "day", "week")
        )
        + "</p>"
    )


# --- the pages -------------------------------------------------------------------------


def overview_page(d: Mapping[str, Any], who: str | None) -> str:
    series = {
        o: [(p["t"], p["per_minute"]) for p in pts] for o, pts in d["decisions_per_minute"].items()
    }
    prevented = [(r["rule"], r["count"]) for r in d["conflicts_prevented"]]
    body = [
        range_links("/", d["range"]),
        f'<p class="muted">From {esc(d["from"])} to {esc(d["to"])}; '
        f"{d['bucket_minutes']}-minute buckets. "
        f"Read model: {d['records']['audit']:,} audit records, "
        f"{d['records']['deadletter']:,} dead letters.</p>",
        '<div class="grid"><div class="card"><h2>Decisions per minute, by outcome</h2>',
        line_chart(series, d["span_ms"], "decisions per minute by outcome"),
        table(("outcome", "decisions"), d["totals"].items(), (1,)),
        '</div><div class="card"><h2>Conflicts prevented, by rule</h2>',
        bar_chart(prevented, "conflicts prevented by rule")
        if prevented
        else "<p>none in this window</p>",
        table(("rule", "proposals stopped"), prevented, (1,)),
        "</div></div>",
        experience_block(d.get("experience"), d["span_ms"], d["range"]),
        '<div class="card"><h2>Experience signals</h2><p class="muted">The signals the experience '
        "and impact metrics are counted from (csat and sentiment: mean score).</p>",
        table(
            ("signal", "count", "mean score"),
            (
                (s["type"], s["count"], "" if s["mean_score"] is None else s["mean_score"])
                for s in d["signals"]
            ),
            (1, 2),
        ),
        "</div>",
    ]
    return page("Overview", "/", "".join(body), who)


def fmt(value: float | None, unit: str, signed: bool = False) -> str:
    """A metric's value in its unit; a change of a share in percentage points."""
    if value is None:
        return "-"
    sign = "+" if signed and value > 0 else ""
    if unit == "share":
        return f"{sign}{value * 100:.1f} pp" if signed else f"{value:.1%}"
    if unit == "seconds":
        size = abs(value)
        if size >= 3600:
            return f"{sign}{value / 3600:.1f} h"
        return f"{sign}{value / 60:.1f} min" if size >= 60 else f"{sign}{value:.0f} s"
    if unit == "count":
        return f"{sign}{value:,.0f}"
    if unit == "currency":
        return f"{sign}{value:,.2f}"
    return f"{sign}{value:.2f}"


DIRECTION_CLASS = {"better": "ok", "worse": "bad"}


def experience_block(d: Mapping[str, Any] | None, span_ms: float, span: str) -> str:
    """Each experience metric: this window, the one before, the change and a sparkline."""
    head = (
        '<div class="card"><h2>Experience metrics</h2><p class="muted">Replayed from the audit '
        f"with the worker's own definitions; each against the {esc(span)} before. A gap in a "
        "line is a bucket without anything to divide by.</p>"
    )
    if d is None or d.get("computing"):
        return head + "<p>Being computed from the read model; reload in a moment.</p></div>"
    rows = []
    for m in d["metrics"]:
        direction = m["direction"]
        css = DIRECTION_CLASS.get(direction, "muted")
        spark = line_chart(
            {m["metric"]: [(p["t"], p["value"]) for p in m["series"]]},
            span_ms,
            f"{m['label']} over the last {span}",
            width=220,
            height=60,
            with_legend=False,
        )
        rows.append(
            f"<tr><td>{esc(m['label'])}</td>"
            f'<td class="n">{esc(fmt(m["value"], m["unit"]))}</td>'
            f'<td class="n">{esc(fmt(m["previous"], m["unit"]))}</td>'
            f'<td class="n {css}">{esc(fmt(m["change"], m["unit"], signed=True))} '
            f"({esc(direction)})</td><td>{spark}</td></tr>"
        )
    return (
        head + '<table class="experience"><thead><tr><th>metric</th><th class="n">this window</th>'
        '<th class="n">window before</th><th class="n">change</th><th>trend</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<p class="muted">{d["records_replayed"]:,} audit records replayed, '
        f"{d['records_not_replayable']:,} without a replayable input (minimised).</p></div>"
    )


def agents_page(d: Mapping[str, Any], who: str | None) -> str:
    out = []
    for c in d["agents"]:
        share = "-" if c["share_approved"] is None else f"{c['share_approved']:.1%}"
        h = c["holdout"]
        lift = (
            "no holdout for this agent"
            if h is None or h["lift"] is None
            else (
                f"conversion lift {h['lift']:+.2%} "
                f"(95 % interval {h['ci_low']:+.2%} to {h['ci_high']:+.2%}): "
                f"{h['verdict']}; {h['next_step']}"
            )
        )
        if h is not None and h["lift"] is None:
            lift = str(h["next_step"])
        elif h is not None and "can't tell" not in h["verdict"]:
            lift = lift.rsplit("; ", 1)[0]
        out.append(
            f'<div class="card"><h2>{esc(c["agent"])}</h2>'
            f"<p>{c['proposals']:,} proposals, {c['approved']:,} approved ({share}). "
            f"Kill switch: <strong>{esc(c['kill_switch'])}</strong>.</p>"
            f"<p>Holdout: {esc(lift)}</p>"
            + table(
                ("stopped by rule", "count"),
                ((s["rule"], s["count"]) for s in c["stopped_by"]),
                (1,),
            )
            + "</div>"
        )
    m = d["collisions"]
    names = m["agents"]
    merged = {(x["agent"], x["into"]): x["count"] for x in m["merged_into"]}
    outranked = {(x["agent"], x["by"]): x["count"] for x in m["outranked_by"]}
    rows = [
        [a, *(f"{merged.get((a, b), 0)} / {outranked.get((a, b), 0)}" for b in names)]
        for a in names
    ]
    out.append(
        '<div class="card"><h2>Who collided with whom</h2><p class="muted">Row agent\'s proposals '
        "merged into / outranked by the column agent's.</p>"
        + table(("agent", *names), rows)
        + "</div>"
    )
    return page("Agents", "/agents", "".join(out), who)


def dead_letters_page(d: Mapping[str, Any], who: str | None) -> str:
    series = {r: [(p["t"], p["count"]) for p in pts] for r, pts in d["by_reason_over_time"].items()}
    rows = [
        (x["at"], x["reason"], x["detail"], x["source"], x["raw_bytes"], x["raw_hex"][:512])
        for x in d["latest"]
    ]
    body = [
        range_links("/dead-letters", d["range"]),
        '<div class="card"><h2>Dead letters by reason over time</h2>',
        line_chart(series, d["span_ms"], "dead letters by reason over time"),
        table(
            ("reason", "count (all time)"), ((t["reason"], t["count"]) for t in d["totals"]), (1,)
        ),
        '</div><div class="card"><h2>Latest</h2>',
        "<table><thead><tr><th>at</th><th>reason</th><th>detail</th><th>source</th>"
        "<th class=n>bytes</th>"
        "<th>raw bytes (hex)</th></tr></thead><tbody>",
        "".join(
            f"<tr><td>{esc(a)}</td><td>{esc(r)}</td><td>{esc(dt)}</td><td>{esc(s)}</td>"
            f"<td class=n>{n}</td><td><pre>{esc(hx)}</pre></td></tr>"
            for a, r, dt, s, n, hx in rows
        ),
        "</tbody></table></div>",
    ]
    return page("Dead letters", "/dead-letters", "".join(body), who)


def search_form(value: str = "") -> str:
    return (
        '<form method="get" action="/customers"><label>Customer id '
        f'<input name="id" value="{esc(value)}" required></label> <button>Show</button></form>'
    )


def customer_page(d: Mapping[str, Any], who: str | None) -> str:
    if not d.get("known"):
        body = (
            search_form(d.get("customer_id") or "") + f'<p class="bad">{esc(d.get("message"))}</p>'
        )
        return page("No such customer", "/customers", body, who)
    arms = ", ".join(f"{a['experiment']}: {a['arm']}" for a in d["experiments"]) or "none"
    rows = (
        (
            t["at"],
            t["kind"],
            t["agent"],
            t["channel"] or "",
            t["what"],
            t["outcome"],
            t["rule"] or "",
            t["reason"],
        )
        for t in d["timeline"]
    )
    body = (
        search_form(d["customer_id"])
        + f"<p>Times in the customer's time zone, <strong>{esc(d['timezone'])}</strong>. "
        f"Experiment arms: {esc(arms)}.</p>"
        + live_state_block(d.get("live_state"))
        + "<h2>Timeline, from the audit</h2>"
        + table(("when", "kind", "agent", "channel", "what", "outcome", "rule", "reason"), rows)
    )
    return page(f"Customer {d['customer_id']}", "/customers", body, who)


def live_state_block(d: Mapping[str, Any] | None) -> str:
    """The customer as the worker holds them now: what the rules will see next."""
    if d is None:
        return ""
    head = '<div class="card"><h2>Now, as the worker holds this customer</h2>'
    if not d.get("available"):
        return head + f'<p class="bad">{esc(d.get("error"))}</p></div>'
    if not d.get("known"):
        return head + "<p>The worker holds no state for this customer yet.</p></div>"
    qh, e, offer = d["quiet_hours"], d["escalation"], d["offer"]
    lines = [
        f"As of {esc(d['as_of'])}, policy <code>{esc(d['policy_version'])}</code>. ",
        "Quiet hours now: "
        + (f"yes, next send allowed {esc(qh['next_allowed_send'])}" if qh["quiet_now"] else "no")
        + ". ",
        "Needs a human: "
        + (f"yes, since {esc(e['since'])} ({esc(e['reason'])})" if e["needs_human"] else "no")
        + ". ",
        "Offer: "
        + (
            "none"
            if offer is None
            else f"{esc(offer['offer_id'])} by {esc(offer['agent'])} until {esc(offer['until'])}"
        )
        + ".",
    ]
    return (
        head
        + f'<p>{"".join(lines)}</p><div class="grid"><div>'
        + "<h3>Consents</h3>"
        + table(
            ("channel", "purpose", "granted", "since"),
            (
                (c["channel"], c["purpose"], "yes" if c["granted"] else "no", c["at"])
                for c in d["consents"]
            ),
        )
        + "<h3>Holds</h3>"
        + table(
            ("hold", "key", "until", "proposals"),
            ((h["hold_id"], h["key"], h["until"], h["proposals"]) for h in d["holds"]),
            (3,),
        )
        + "</div><div><h3>Frequency caps</h3>"
        + table(
            ("cap", "scope", "used / limit", "headroom", "window"),
            (
                (
                    c["cap"],
                    f"{c['scope']} {c['value']}" if c.get("value") else c["scope"],
                    f"{c['used']} / {c['limit']}",
                    c["headroom"],
                    c["window"],
                )
                for c in d["caps"]
            ),
            (3,),
        )
        + "<h3>Open cases</h3>"
        + table(("case", "opened"), ((c["case_id"], c["opened"]) for c in d["open_cases"]))
        + "</div></div></div>"
    )


def report_page(d: Mapping[str, Any], who: str | None) -> str:
    def pct(v: Any, metric: str) -> str:
        if v is None:
            return "-"
        return f"{v:.3g}" if metric in ("revenue", "csat") else f"{v:.2%}"

    rows = (
        (
            r["experiment"],
            r["metric"],
            f"{r['n_treatment']:,} / {r['n_control']:,}",
            pct(r["treatment"], r["metric"]),
            pct(r["control"], r["metric"]),
            "-"
            if r["lift"] is None
            else f"{pct(r['lift'], r['metric'])} "
            f"[{pct(r['ci_low'], r['metric'])}, {pct(r['ci_high'], r['metric'])}]",
            r["verdict"],
            r["next_step"],
        )
        for r in d["rows"]
    )
    if d.get("computing"):
        body = "<p>The report is being computed from the read model; reload in a moment.</p>"
        return page("Impact report", "/report", body, who)
    body = (
        f'<p class="muted">Computed {esc(d["computed_at"])} '
        f"from {d['records_counted']:,} audit records "
        f"in {d['seconds']} s, with the statistics of <code>tower report</code>.</p>"
        + (
            table(
                (
                    "experiment",
                    "metric",
                    "customers (treatment / control)",
                    "treatment",
                    "control",
                    "lift [95 % interval]",
                    "verdict",
                    "what next",
                ),
                rows,
            )
            if d["rows"]
            else "<p>No experiment exposures yet: add an experiments: block to the policy.</p>"
        )
    )
    body += (
        '<div class="card"><h2>As <code>tower report</code> writes it</h2>'
        '<p><a href="/report.html" download="impact-report.html">the HTML file</a> · '
        '<a href="/report.json" download="impact-report.json">the JSON</a></p>'
        '<iframe class="report" src="/report.html" sandbox title="the impact report as '
        'tower report --html writes it"></iframe></div>'
    )
    return page("Impact report", "/report", body, who)


def live_page(d: Mapping[str, Any], who: str | None) -> str:
    selects = []
    for name, options in d["options"].items():
        chosen = d["filters"][name]
        opts = f'<option value="">any {esc(name)}</option>' + "".join(
            f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}</option>'
            for o in options
        )
        selects.append(f'<label>{esc(name)} <select name="{esc(name)}">{opts}</select></label> ')
    checked = " checked" if d["signals_shown"] else ""
    form = (
        '<form method="get" action="/live">'
        + "".join(selects)
        + f'<label><input type="checkbox" name="signals" value="1"{checked}> show signals</label> '
        "<button>Filter</button></form>"
    )
    folded = (
        f'<p class="muted">{d["signals_folded"]:,} signals folded (tick "show signals").</p>'
        if not d["signals_shown"]
        else ""
    )
    rows = (
        (
            x["at"],
            x["customer_id"],
            x["kind"],
            x["agent"],
            x["channel"] or "",
            x["outcome"],
            x["rule"] or "",
            x["reason"],
        )
        for x in d["decisions"]
    )
    body = (
        form
        + folded
        + table(("when", "customer", "kind", "agent", "channel", "outcome", "rule", "reason"), rows)
    )
    return page("Live decisions", "/live", body, who)


def _post_form(action: str, fields: Mapping[str, str], button: str, extra: str = "") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items()
    )
    return (
        f'<form class="inline" data-post="{esc(action)}">{hidden}{extra}'
        f'<button>{esc(button)}</button> <span class="result" role="status"></span></form>'
    )


def policy_page(d: Mapping[str, Any], who: str | None) -> str:
    active = d["active"]
    head = (
        f"<p>In force: <code>{esc(d['in_force'])}</code>"
        + (
            ""
            if active is None
            else f" — published {esc(active['published_at'])} by {esc(active['published_by'])}"
            + (
                f", proposed by {esc(active['proposed_by'])}, "
                f"approved by {esc(active['approved_by'])}"
                if active["proposed_by"]
                else ""
            )
        )
        + "</p>"
    )
    pending = []
    for p in d["pending"]:
        v = p["policy_version"]
        whatif = f"/policy?whatif={quote(v)}"
        pending.append(
            f'<div class="card"><h2>Pending: <code>{esc(v)}</code></h2>'
            f"<p>Proposed by {esc(p['proposed_by'])} at {esc(p['proposed_at'])}.</p>"
            f'<p><a href="{esc(whatif)}">what-if against the policy in force</a> · '
            f'<a href="/policy?{esc(urlencode({"old": d["in_force"], "new": v}))}">diff</a></p>'
            + _post_form("/api/console/v1/policy/approve", {"version": v}, "Approve")
            + " "
            + _post_form(
                "/api/console/v1/policy/reject",
                {"version": v},
                "Reject",
                '<input name="reason" placeholder="why" aria-label="why"> ',
            )
            + "</div>"
        )
    history = table(
        ("version", "published", "by", "proposed by", "approved by"),
        (
            (
                h["policy_version"],
                h["published_at"],
                h["published_by"],
                h["proposed_by"] or "-",
                h["approved_by"] or "-",
            )
            for h in d["history"]
        ),
    )
    versions = d["versions"]
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in versions)
    diff_form = (
        '<form method="get" action="/policy"><label>old <select name="old">'
        + opts
        + '</select></label> <label>new <select name="new">'
        + opts
        + "</select></label> <button>Diff</button></form>"
    )
    kill = []
    for agent in d["agents"]:
        off = agent in d["kill_switch"]["agents"]
        kill.append(
            f"<tr><td>{esc(agent)}</td><td>{'switched off' if off else 'on'}</td><td>"
            + _post_form(
                "/api/console/v1/policy/kill-switch",
                {"agent": agent, "off": "false" if off else "true"},
                "Propose switching on" if off else "Propose switching off",
            )
            + "</td></tr>"
        )
    rollback = "".join(
        f"<tr><td><code>{esc(v)}</code></td><td>"
        + _post_form("/api/console/v1/policy/rollback", {"version": v}, "Propose rollback to this")
        + "</td></tr>"
        for v in versions
        if v != d["in_force"]
    )
    parts = [head, '<p id="result" class="result" role="status"></p>', *pending]
    if d.get("diff"):
        parts.append(diff_block(d["diff"]))
    if d.get("whatif"):
        parts.append(whatif_block(d["whatif"]))
    parts += [
        '<div class="card"><h2>History</h2>',
        history,
        "</div>",
        '<div class="card"><h2>Diff two versions</h2>',
        diff_form,
        "</div>",
        '<div class="card"><h2>Kill switch per agent</h2>'
        '<p class="muted">Each switch is a policy change '
        "proposed in your name; a second person approves it.</p><table><thead><tr><th>agent</th>"
        "<th>state</th><th>change</th></tr></thead><tbody>",
        *kill,
        "</tbody></table></div>",
        '<div class="card"><h2>Roll back</h2><table><tbody>',
        rollback,
        "</tbody></table></div>",
    ]
    parts.append(
        '<div class="card"><h2>Console actions</h2><p class="muted">Who did what here, '
        "as the audit records it (<code>console_action</code>).</p>"
        + table(
            ("when", "who", "action", "what", "policy in force"),
            (
                (a["at"], a["by"], a["action"], a["what"], a["in_force"])
                for a in d.get("console_actions") or ()
            ),
        )
        + "</div>"
    )
    return page("Policy", "/policy", "".join(parts), who)


def diff_block(d: Mapping[str, Any]) -> str:
    if d.get("error"):
        return f'<div class="card"><p class="bad">{esc(d["error"])}</p></div>'
    changes = "".join(f"<li>{esc(c)}</li>" for c in d["changes"]) or "<li>no setting changed</li>"
    return (
        f'<div class="card"><h2>Diff <code>{esc(d["old"])}</code> → '
        f"<code>{esc(d['new'])}</code></h2>"
        f"<ul>{changes}</ul><pre>{esc(chr(10).join(d['document_diff']))}</pre></div>"
    )


def whatif_block(d: Mapping[str, Any]) -> str:
    if d.get("error"):
        return f'<div class="card"><p class="bad">{esc(d["error"])}</p></div>'
    rows = (
        (t["old"], t["new"], t["count"], ", ".join(t["examples"][:3])) for t in d["transitions"]
    )
    ex = (
        (x["event_id"], x["customer_id"], x["agent"], x["channel"] or "", x["old"], x["new"])
        for x in d["examples"]
    )
    return (
        f'<div class="card"><h2>What-if: <code>{esc(d["new_version"])}</code> against '
        f"<code>{esc(d['old_version'])}</code></h2><p>{d['events']:,} recorded inputs of the last "
        f"{d['hours']} h re-decided: {d['changed']:,} decisions change.</p>"
        + table(("old", "new", "count", "examples"), rows, (2,))
        + table(("changed, by rule", "count"), d["by_rule"].items(), (1,))
        + table(("changed, by agent", "count"), d["by_agent"].items(), (1,))
        + table(("changed, by channel", "count"), d["by_channel"].items(), (1,))
        + table(("event", "customer", "agent", "channel", "old", "new"), ex)
        + "</div>"
    )
