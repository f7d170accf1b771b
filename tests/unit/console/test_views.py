"""What the console's pages show, from a read model filled with known records."""

from __future__ import annotations

import re

import pytest

from pipeline.console import views
from pipeline.console.app import with_kill_switch
from pipeline.console.store import Batch, Store, audit_row, deadletter_row
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_document import load_policy
from tests.unit.console.records import NOW, audit, dead_letter

H = 3_600_000


@pytest.fixture
def store() -> Store:
    s = Store.open(None)
    b = Batch()
    rows = [
        audit(0, "ana", kind="signal", outcome="recorded",
              signal={"type": "profile_updated", "attributes": {"timezone": "Asia/Tokyo"}}),
        audit(1, "ana", arms=[{"experiment": "holdout:promo-bot", "arm": "treatment"}]),
        audit(2, "ana", outcome="suppressed", rule="quiet_hours",
              reason=f"quiet hours: deferred until {NOW + H}", at=NOW + 1000),
        audit(3, "ben", agent="upsell-bot", outcome="merged", rule="duplicate_merge",
              merged_into="d1", at=NOW + 2000),
        audit(4, "ben", kind="signal", outcome="recorded", at=NOW + 3000),
    ]  # fmt: skip
    for i, r in enumerate(rows):
        b.audit.append(audit_row(0, i, r))
    b.deadletter.append(deadletter_row(0, 0, dead_letter(0)))
    b.next_offsets[("audit", 0)] = len(rows)
    s.add(b)
    return s


def test_the_overview_counts_by_outcome_and_rule(store: Store) -> None:
    d = views.overview(store, "hour", now=NOW + 10_000)
    assert d["totals"] == {"recorded": 2, "approved": 1, "suppressed": 1, "merged": 1}
    assert d["conflicts_prevented"] == [
        {"rule": "duplicate_merge", "count": 1},
        {"rule": "quiet_hours", "count": 1},
    ]
    assert views.overview(store, "hour", now=NOW + 2 * H)["totals"] == {}


def test_a_customer_in_their_time_zone_with_no_epoch_milliseconds(store: Store) -> None:
    d = views.customer_view(store, "ana", DEFAULT_POLICY)
    assert d["known"] and d["timezone"] == "Asia/Tokyo"
    assert d["experiments"] == [{"experiment": "holdout:promo-bot", "arm": "treatment"}]
    assert d["timeline"][0]["at"] == "2026-01-01 09:00:00 JST"
    assert d["timeline"][2]["reason"] == "quiet hours: deferred until 2026-01-01 10:00:00 JST"
    assert not re.search(r"1\d{12}", str(d))


def test_an_unknown_customer_says_so(store: Store) -> None:
    d = views.customer_view(store, "nobody", DEFAULT_POLICY)
    assert d["known"] is False
    assert "no such customer" in d["message"]


def test_merges_fill_the_collision_matrix(store: Store) -> None:
    d = views.agents_view(store, {"rows": []}, frozenset({"upsell-bot"}))
    assert d["collisions"]["merged_into"] == [
        {"agent": "upsell-bot", "into": "promo-bot", "count": 1}
    ]
    cards = {c["agent"]: c for c in d["agents"]}
    assert cards["promo-bot"]["share_approved"] == 0.5
    assert cards["upsell-bot"]["kill_switch"].startswith("off")


def test_live_folds_signals_unless_asked(store: Store) -> None:
    folded = views.live_view(store, {}, signals=False)
    assert folded["signals_folded"] == 2
    assert {x["kind"] for x in folded["decisions"]} == {"proposal"}
    shown = views.live_view(store, {"outcome": "recorded"}, signals=True)
    assert len(shown["decisions"]) == 2
    assert (
        views.live_view(store, {"agent": "upsell-bot"}, signals=False)["decisions"][0]["outcome"]
        == "merged"
    )


def test_dead_letters_keep_their_raw_bytes_as_hex(store: Store) -> None:
    d = views.dead_letters_view(store, "day", now=NOW + 1000)
    assert d["totals"] == [{"reason": "bad_json", "count": 1}]
    assert d["latest"][0]["raw_hex"].startswith("007b626164")


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"verdict": "helps"}, "helps: the interval excludes zero"),
        ({"verdict": "can't tell yet", "metric": "conversion", "treatment": 0.12, "control": 0.10,
          "n_treatment": 100, "n_control": 100},
         "needs about 1,779 more customers per arm to tell"),
        ({"verdict": "can't tell yet", "metric": "revenue", "treatment": 3.0, "control": 2.0,
          "n_treatment": 5, "n_control": 5}, "can't tell yet: collect more exposed customers"),
    ],
)  # fmt: skip
def test_the_next_step_in_plain_words(row: dict, says: str) -> None:
    assert views.next_step(row) == says


def test_readable_replaces_only_epoch_milliseconds() -> None:
    assert views.readable(f"until {NOW} (offset 12, id 1234567890123.5)") == (
        "until 2026-01-01 00:00:00 UTC (offset 12, id 1234567890123.5)"
    )


def test_what_if_re_decides_recorded_inputs_by_rule_agent_and_channel() -> None:
    s = Store.open(None)
    b = Batch()
    for i in range(12):
        agent = "promo-bot" if i % 3 else "care-bot"
        b.audit.append(audit_row(0, i, audit(i, f"c{i % 4}", agent=agent, at=NOW + i)))
    b.next_offsets[("audit", 0)] = 12
    s.add(b)
    agents = "agents: [promo-bot, care-bot]\n"
    old = load_policy("version: 1.0.0\n" + agents)
    new = load_policy("version: 1.0.1\n" + agents + "kill_switch:\n  agents: [promo-bot]\n")
    d = views.what_if_view(s, old, new, hours=1, now=NOW + 1000)
    assert (d["events"], d["changed"]) == (12, 8)
    assert d["by_rule"] == {"kill_switch": 8} and d["by_agent"] == {"promo-bot": 8}
    assert d["by_channel"] == {"email": 8}
    assert {x["new"] for x in d["examples"]} == {"suppressed/kill_switch"}
    assert views.what_if_view(s, old, new, hours=1, now=NOW + 2 * H)["events"] == 0


@pytest.mark.parametrize(
    ("document", "off", "agents"),
    [
        ("version: 1.0.0\nagents: [a, b]\n", True, ["b"]),
        ("version: 1.0.0\nagents: [a, b]\nkill_switch:\n  agents: [a, b]\n", False, ["a"]),
        ("version: 1.0.0\nagents: [a, b]\nkill_switch:\n  agents: [b]\n", True, ["b"]),
    ],
)
def test_the_kill_switch_is_a_new_document(document: str, off: bool, agents: list[str]) -> None:
    text = with_kill_switch(document, "b", off)
    assert sorted(load_policy(text).kill_switch.agents) == agents
