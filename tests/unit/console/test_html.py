"""Hostile text in records renders as text on every console page."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.console import html, views
from pipeline.console.store import Batch, Store, audit_row, deadletter_row
from pipeline.core.policy import DEFAULT_POLICY
from tests.unit.console.records import HOSTILE, NOW, audit, dead_letter


@pytest.fixture
def store() -> Store:
    s = Store.open(None)
    b = Batch()
    for i in range(4):
        r = audit(
            i, HOSTILE, agent=HOSTILE, outcome="suppressed" if i % 2 else "approved",
            rule=HOSTILE, reason=HOSTILE, content=HOSTILE, at=NOW + i,
            arms=[{"experiment": "holdout:" + HOSTILE, "arm": "treatment" if i < 2 else "holdout"}],
        )  # fmt: skip
        b.audit.append(audit_row(0, i, r))
    b.deadletter.append(deadletter_row(0, 0, dead_letter(0, reason=HOSTILE, detail=HOSTILE)))
    b.next_offsets[("audit", 0)] = 4
    s.add(b)
    return s


def pages(store: Store) -> dict[str, str]:
    report = views.impact_report(store, lambda v: None)
    live = {
        **views.live_view(store, {"agent": HOSTILE}, True),
        "options": views.live_options(store),
    }
    return {
        "overview": html.overview_page(views.overview(store, "week", now=NOW + 10), HOSTILE),
        "agents": html.agents_page(views.agents_view(store, report, frozenset({HOSTILE})), None),
        "dead": html.dead_letters_page(views.dead_letters_view(store, "day", now=NOW + 10), None),
        "customer": html.customer_page(views.customer_view(store, HOSTILE, DEFAULT_POLICY), None),
        "unknown": html.customer_page(
            views.customer_view(store, HOSTILE + "x", DEFAULT_POLICY), None
        ),
        "report": html.report_page(report, None),
        "live": html.live_page(live, None),
    }


def test_hostile_text_is_escaped_on_every_page(store: Store) -> None:
    for name, text in pages(store).items():
        body = text.replace('<script src="/console.js"></script>', "")
        assert "<script" not in body and "<img" not in body, name
        assert "&lt;script&gt;" in body or name == "report", name


def test_policy_page_escapes_names_and_versions() -> None:
    entry: dict[str, Any] = {
        "policy_version": HOSTILE, "version": "1", "published_by": HOSTILE, "published_at": "x",
        "proposed_by": HOSTILE, "proposed_at": "x", "approved_by": HOSTILE, "approved_at": "x",
        "signed": True,
    }  # fmt: skip
    data = {
        "in_force": HOSTILE, "active": entry, "history": [entry], "versions": [HOSTILE, "v2"],
        "pending": [entry], "kill_switch": {"agents": [HOSTILE]}, "agents": [HOSTILE],
        "diff": {"old": HOSTILE, "new": "v2", "changes": [HOSTILE], "document_diff": [HOSTILE]},
    }  # fmt: skip
    body = html.policy_page(data, HOSTILE).replace('<script src="/console.js"></script>', "")
    assert "<script" not in body and "<img" not in body
