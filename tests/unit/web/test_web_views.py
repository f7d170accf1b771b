"""The web views' pure parts: the decision feed, the counters, a customer's page data and
its HTML."""

from __future__ import annotations

from dataclasses import replace

from pipeline.contracts.codec import decode_record, encode_event
from pipeline.contracts.events import Source
from pipeline.core.arbitration import decide
from pipeline.core.policy import DAY_MS, DEFAULT_POLICY, FrequencyCap, Policy
from pipeline.core.rules import frequency_caps
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.processing.metrics import TowerMetrics
from pipeline.processing.records import audit_record
from pipeline.settings import Settings
from pipeline.web.customer_view import caps_used, customer_view, timeline_entry
from pipeline.web.decision_feed import DecisionFeed, decision_counts
from pipeline.web.pages import render_customer_page
from tests.factories import T0, consent, proposal, signal

SETTINGS = Settings()
H = 3_600_000


def journey() -> list:
    return [
        consent(True, "email", "marketing", "c1", T0),
        proposal("c1", T0 + H, trigger="t1", asserts={"price": "9"}),
        proposal("c1", T0 + 2 * H, trigger="t2", channel="sms"),
        signal("case_opened", "c1", T0 + 3 * H, case_id="k1"),
        proposal("c1", T0 + 4 * H, trigger="t3"),
    ]


def decided(events, policy: Policy = DEFAULT_POLICY):
    state: CustomerState = EMPTY_STATE
    audits = []
    for i, ev in enumerate(events):
        d, state = decide(state, ev, policy, ev.occurred_at)
        audits.append(audit_record(d, ev, Source("agent-events", 0, i), ev.occurred_at))
    return state, audits


def test_the_processor_feeds_every_decision_in_order_and_the_feed_keeps_the_newest():
    events = journey()
    proc = BatchProcessor(SETTINGS, policy=lambda: DEFAULT_POLICY, clock=lambda: 1.0)
    proc.feed = feed = DecisionFeed(maxlen=3)
    recs = [
        InputRecord(e.customer_id.encode(), encode_event(e, "json"), 0, i, None)
        for i, e in enumerate(events)
    ]
    out = proc.process_and_save(recs, DictStateStore())
    audits = [decode_record("audit_record", o.value) for o in out.outputs if o.topic == "audit"]
    assert feed.last == len(events) == len(audits)
    rows = feed.after(0)
    assert [r["seq"] for r in rows] == [3, 4, 5]  # bounded: the oldest fell off
    assert [(r["event"], r["outcome"], r["rule"], r["reason"]) for r in rows] == [
        (a["event_id"], a["outcome"], a["rule"], a["reason"]) for a in audits[-3:]
    ]
    assert rows[0]["time"] == 1000 and rows[0]["customer"] == "c1"
    assert feed.after(4) == rows[2:]
    assert feed.after(5) == []
    assert feed.after(99) == rows  # a poller from a previous run of the worker starts over


def test_counts_come_from_the_decisions_counter():
    m = TowerMetrics()
    m.decisions.labels("approved", "-").inc(3)
    m.decisions.labels("suppressed", "consent").inc(2)
    m.decisions.labels("suppressed", "frequency_cap").inc()
    assert decision_counts(m.decisions) == {
        "total": 6,
        "outcomes": {"approved": 3, "suppressed": 3},
        "rules": {"-": 3, "consent": 2, "frequency_cap": 1},
    }


def test_caps_used_counts_like_the_frequency_cap_rule():
    policy = Policy(
        caps=(
            FrequencyCap("daily", limit=3, window_ms=DAY_MS),
            FrequencyCap("weekly-all", limit=5, window_ms=7 * DAY_MS, scope="all"),
        )
    )
    events = [
        consent(True, "all", "marketing", "c1", T0),
        *(proposal("c1", T0 + i * H, trigger=f"t{i}", channel="email") for i in range(1, 3)),
        proposal("c1", T0 + 3 * H, trigger="t3", channel="sms"),
        proposal("c1", T0 + 30 * H, trigger="t4", channel="email"),  # a day later
    ]
    state, _ = decided(events, policy)
    as_of = T0 + 30 * H
    rows = {
        (r["cap"], r["value"]): (r["used"], r["limit"]) for r in caps_used(state, policy, as_of)
    }
    assert rows == {("daily", "email"): (1, 3), ("weekly-all", None): (4, 5)}
    for cap in policy.caps:
        value = None if cap.scope == "all" else "email"
        assert rows[(cap.name, value)][0] == frequency_caps.used(cap, state.contacts, value, as_of)


def test_customer_view_shows_state_and_timeline():
    state, audits = decided(journey())
    other = replace(journey()[0], customer_id="c2")
    _, other_audits = decided([other])
    view = customer_view("c1", state, DEFAULT_POLICY, audits + other_audits, partition=2)
    assert view["known"] and view["partition"] == 2 and view["events"] == 5
    assert view["consents"] == [{"scope": "email:marketing", "granted": True, "at": T0}]
    assert view["caps_used"] == [
        {
            "cap": "per-channel-daily",
            "scope": "channel",
            "value": "email",
            "used": 1,
            "limit": 3,
            "window_s": 86400,
        }
    ]
    assert view["open_cases"] == [{"case_id": "k1", "opened_at": T0 + 3 * H}]
    assert view["facts"] == [
        {"name": "price", "value": "9", "agent": "marketing-bot", "at": T0 + H}
    ]
    assert view["as_of"] == T0 + 4 * H
    assert [(t["kind"], t["outcome"], t["rule"]) for t in view["timeline"]] == [
        ("signal", "recorded", None),
        ("proposal", "approved", None),
        ("proposal", "suppressed", "consent"),
        ("signal", "recorded", None),
        ("proposal", "suppressed", "service_first"),
    ]  # c2's record is not c1's
    approved = view["timeline"][1]
    assert approved["action_id"] == audits[1]["action_id"] is not None
    assert approved["what"] == "marketing message"
    assert view["timeline"][3]["what"] == "case_opened case_id=k1"


def test_an_unknown_customer_is_not_known():
    view = customer_view("nobody", EMPTY_STATE, DEFAULT_POLICY, [])
    assert not view["known"] and view["as_of"] is None and view["caps_used"] == []


def test_timeline_entry_names_an_action_only_if_one_was_emitted():
    _, audits = decided([consent(True, "email", "marketing", "c1", T0), proposal("c1", T0 + H)])
    assert timeline_entry(audits[1])["action_id"] == audits[1]["action_id"] is not None
    held = {**audits[1], "outcome": "held"}  # decided with an action, but nothing sent yet
    assert timeline_entry(held)["action_id"] is None


def test_the_customer_page_escapes_what_agents_wrote():
    events = [
        consent(True, "email", "marketing", "c1", T0),
        proposal("c1", T0 + H, trigger="t", content="<script>alert(1)</script>"),
    ]
    state, audits = decided(events)
    html = render_customer_page(
        customer_view("c1", state, DEFAULT_POLICY, audits, served_by="http://w1:6066")
    )
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "answered by http://w1:6066" in html
    assert html.count("<tr><td>") >= 3  # consent, cap, two timeline rows
    assert 'class="badge granted"' in html and "<b>1</b> of 3" in html
