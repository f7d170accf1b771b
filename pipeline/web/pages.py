"""The HTML of the journey owners' pages: self-contained (no external assets), since
workers often run where nothing outside the network is reachable.

The live page is static and polls `/api/decisions`, putting what it gets into the page with
`textContent` only (never as HTML); the customer page is rendered here from `customer_view`
data, every value escaped. Event content is whatever an agent sent, so neither may ever
treat it as markup. `CONTENT_SECURITY_POLICY` allows only the pages' own inline script and
style (by hash), so markup that slipped through would still run nothing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:10px 20px;display:flex;gap:24px;
  align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#9cc3ff}
main{padding:16px 20px}section{background:#fff;border:1px solid #dde1e8;border-radius:6px;
  padding:10px 14px;margin-bottom:14px}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#5a6478;font-size:12px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;
  background:#e4e7ec}
.approved,.granted{background:#d3f2dc;color:#135c2a}.deferred{background:#fff1c2}
.suppressed,.withdrawn{background:#fbd9d9;color:#7d1a1a}.merged{background:#dfe7ff}
.escalated{background:#ffe0c2}.held{background:#eadcff}.duplicate{background:#eee}
.withheld{background:#d9eef5;color:#14505f}
.counts{display:flex;gap:8px;flex-wrap:wrap}.count{border:1px solid #dde1e8;
  border-radius:6px;padding:4px 10px}.count b{font-size:16px;margin-left:4px}
.muted{color:#7a8496}code{font-size:12px;white-space:nowrap}
"""

LIVE_SCRIPT = """
const MAX_ROWS = 500;
let after = 0;
const $ = (id) => document.getElementById(id);
function cell(tr, text, cls) {
  const td = tr.insertCell();
  if (cls) { const s = document.createElement("span");
    s.className = "badge " + cls; s.textContent = text; td.appendChild(s); }
  else td.textContent = text == null ? "-" : text;
  return td;
}
function counts(el, map, attr) {
  el.replaceChildren();
  for (const [name, n] of Object.entries(map).sort((a, b) => b[1] - a[1])) {
    const d = document.createElement("div");
    d.className = "count"; d.dataset[attr] = name; d.dataset.count = n;
    d.textContent = name; const b = document.createElement("b"); b.textContent = n;
    d.appendChild(b); el.appendChild(d);
  }
}
function row(r) {
  const tr = document.createElement("tr");
  tr.className = "decision"; tr.dataset.outcome = r.outcome; tr.dataset.rule = r.rule || "-";
  cell(tr, new Date(r.time).toISOString().slice(11, 19));
  const a = document.createElement("a");
  a.href = "/customers/" + encodeURIComponent(r.customer); a.textContent = r.customer;
  tr.insertCell().appendChild(a);
  cell(tr, r.kind + " " + r.event); cell(tr, r.agent); cell(tr, r.channel);
  cell(tr, r.outcome, r.outcome); cell(tr, r.rule || "-"); cell(tr, r.reason);
  return tr;
}
async function poll() {
  try {
    const res = await fetch("/api/decisions?after=" + after);
    if (res.status === 401 || res.status === 403) {
      $("status").textContent = "not signed in: open this page once with ?token=<your token>";
      return;
    }
    const d = await res.json();
    const body = $("decisions");
    if (d.last < after) body.replaceChildren();
    for (const r of d.decisions) body.insertBefore(row(r), body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
    after = d.last;
    $("policy-version").textContent = d.policy_version;
    $("total").textContent = d.counts.total;
    counts($("outcome-counts"), d.counts.outcomes, "outcome");
    counts($("rule-counts"), d.counts.rules, "rule");
    $("status").textContent = "live";
  } catch (e) {
    $("status").textContent = "worker unreachable, retrying";
  } finally {
    setTimeout(poll, 1000);
  }
}
$("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("customer").value.trim();
  if (id) location.href = "/customers/" + encodeURIComponent(id);
});
poll();
"""

LIVE_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Journey Tower - live decisions</title>
<style>"""
    + STYLE
    + """</style></head>
<body>
<header><h1>Journey Tower - live decisions</h1>
<span>policy <code id="policy-version">?</code></span>
<span id="status" class="muted">connecting...</span>
<form id="lookup"><input id="customer" placeholder="customer id" size="16">
<button>Open customer</button></form></header>
<main>
<section><h2>Decisions by outcome (<span id="total">0</span> since the worker started)</h2>
<div class="counts" id="outcome-counts"></div></section>
<section><h2>Decisions by deciding rule</h2><div class="counts" id="rule-counts"></div>
</section>
<section><h2>Latest decisions</h2>
<table><thead><tr><th>time</th><th>customer</th><th>event</th><th>agent</th>
<th>channel</th><th>outcome</th><th>rule</th><th>reason</th></tr></thead>
<tbody id="decisions"></tbody></table></section>
</main>
<script>"""
    + LIVE_SCRIPT
    + """</script></body></html>
"""
)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: the pages run only their own inline script and style, named by hash: an injected
#: `<script>` or handler attribute does not run, and no other site may frame them
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_sha256(LIVE_SCRIPT)}",
        f"style-src {_sha256(STYLE)}",
        "connect-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _e(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _table(testid: str, headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """Cells are HTML already (escaped by the caller)."""
    if not rows:
        return f'<p class="muted" data-testid="{testid}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<table data-testid="{testid}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _badge(text: str | None) -> str:
    return f'<span class="badge {_e(text)}">{_e(text)}</span>'


def _section(title: str, inner: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{inner}</section>"


def render_customer_page(view: Mapping[str, Any]) -> str:
    """The customer page from `customer_view` data."""
    cid = str(view["customer_id"])
    consents = _table(
        "consents",
        ("channel:purpose", "consent", "since"),
        [
            (_e(c["scope"]), _badge("granted" if c["granted"] else "withdrawn"), iso(c["at"]))
            for c in view["consents"]
        ],
        "No consent signals: the policy's opt-in defaults apply.",
    )
    caps = _table(
        "caps",
        ("cap", "scope", "used", "window"),
        [
            (
                _e(c["cap"]),
                _e(c["scope"] if c["value"] is None else f"{c['scope']} {c['value']}"),
                f"<b>{c['used']}</b> of {c['limit']}",
                f"{c['window_s'] // 3600} h" if c["window_s"] >= 3600 else f"{c['window_s']} s",
            )
            for c in view["caps_used"]
        ],
        "No contacts counted by any cap.",
    )
    cases = _table(
        "open-cases",
        ("case", "opened"),
        [(_e(c["case_id"]), iso(c["opened_at"])) for c in view["open_cases"]],
        "No open cases.",
    )
    facts = _table(
        "facts",
        ("fact", "value told", "by", "at"),
        [(_e(f["name"]), _e(f["value"]), _e(f["agent"]), iso(f["at"])) for f in view["facts"]],
        "Nothing asserted to the customer yet.",
    )
    offer = view["offer"]
    offer_html = (
        '<p class="muted" data-testid="offer">No active offer.</p>'
        if offer is None
        else f'<p data-testid="offer"><b>{_e(offer["offer_id"])}</b> from {_e(offer["agent"])} '
        f"since {iso(offer['at'])} (score {offer['score']:g})</p>"
    )
    holds = _table(
        "holds",
        ("hold", "merge key", "proposals", "released at"),
        [
            (_e(h["hold_id"]), _e(h["key"]), str(h["proposals"]), iso(h["deadline"]))
            for h in view["holds"]
        ],
        "No proposals on hold.",
    )
    timeline = _table(
        "timeline",
        ("time", "kind", "agent", "channel", "what", "decision", "rule", "reason", "action"),
        [
            (
                iso(t["at"]),
                _e(t["kind"]),
                _e(t["agent"]),
                _e(t["channel"]),
                _e(t["what"]),
                _badge(t["outcome"]),
                _e(t["rule"]),
                _e(t["reason"]),
                f"<code>{_e(t['action_id'])}</code>" if t["action_id"] else "-",
            )
            for t in reversed(view["timeline"])
        ],
        "No audit records for this customer among the newest of its partition.",
    )
    error = (
        f'<p class="suppressed">Timeline unavailable: {_e(view["timeline_error"])}</p>'
        if view.get("timeline_error")
        else ""
    )
    state_line = (
        f"{view['events']} events decided; timezone {_e(view['timezone'])}; caps counted as of "
        f"{iso(view['as_of'])} (the newest event, in event time as the rules count)"
    )
    served = (
        f"partition {_e(view.get('partition'))}, answered by {_e(view.get('served_by'))}; "
        f"policy {_e(view['policy_version'])}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Customer {escape(cid)} - Journey Tower</title>
<style>{STYLE}</style></head>
<body><header><h1>Customer <span id="customer-id">{escape(cid)}</span></h1>
<a href="/">live decisions</a><span class="muted" id="served">{served}</span></header>
<main>
<p class="muted" id="state-line">{state_line}</p>
{_section("Consents", consents)}
{_section("Frequency caps used", caps)}
{_section("Open cases", cases)}
{_section("Facts told to the customer", facts)}
{_section("Active offer", offer_html)}
{_section("Proposals on hold", holds)}
{_section("Timeline, newest first (from the audit topic)", error + timeline)}
</main></body></html>
"""
