"""Request bodies of the agents' API: every problem at once, defaults filled in, the
schema's lists equal to the codec's."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.contracts.events import ACTIONS, CATEGORIES, CHANNELS, SIGNAL_TYPES
from pipeline.web.api_requests import InvalidRequest, event_of, parse_body, schema

GOOD: dict[str, Any] = {
    "customer_id": "ana",
    "agent": "care-bot",
    "department": "service",
    "channel": "chat",
    "proposal": {"action": "answer", "category": "service", "priority": 50},
}


def fields_of(body: dict[str, Any], kind: str = "proposal") -> list[str]:
    with pytest.raises(InvalidRequest) as refused:
        event_of(body, kind)
    return [p.field for p in refused.value.problems]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["customer_id", "agent", "department", "channel", "proposal"]),
        (
            {**GOOD, "channel": "fax", "proposal": {"action": "answer", "priority": 101}},
            ["channel", "proposal.category", "proposal.priority"],
        ),
        ({**GOOD, "chanel": "chat"}, ["chanel"]),
        ({**GOOD, "occurred_at": -1, "kind": "signal"}, ["kind", "occurred_at"]),
        ({**GOOD, "proposal": {**GOOD["proposal"], "propensity": 2}}, ["proposal.propensity"]),
    ],
)
def test_every_invalid_field_is_listed_at_once(body: dict[str, Any], fields: list[str]) -> None:
    assert sorted(fields_of(body)) == sorted(fields)


def test_event_id_occurred_at_and_kind_are_filled_in_unless_given() -> None:
    event = event_of(GOOD, "proposal", now_ms=1234)
    assert event.event_id.startswith("e-") and event.occurred_at == 1234
    assert event.kind == "proposal" and event.proposal is not None
    assert event_of({**GOOD, "event_id": "mine", "occurred_at": 5}, "proposal").event_id == "mine"
    assert event_of(GOOD, "proposal").event_id != event_of(GOOD, "proposal").event_id


def test_a_request_of_the_other_kind_is_refused() -> None:
    signal = {"customer_id": "ana", "agent": "crm", "department": "system", "kind": "signal"}
    assert "kind" in fields_of({**signal, "signal": {"type": "purchase"}}, "proposal")
    assert "kind" in fields_of({**GOOD, "kind": "proposal"}, "signal")


def test_a_signal_needs_no_channel() -> None:
    body = {"customer_id": "ana", "agent": "crm", "department": "system"}
    event = event_of({**body, "signal": {"type": "purchase"}}, "signal")
    assert event.kind == "signal" and event.channel is None
    assert fields_of({**body, "signal": {"type": "nope"}}, "signal") == ["signal.type"]


@pytest.mark.parametrize("raw", [b"{oops", b"[1, 2]", b"x" * 70000])
def test_a_body_that_is_no_json_object_is_one_problem(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_body(raw, 65536)
    assert [p.field for p in refused.value.problems] == [""]


def test_the_schemas_allow_what_the_codec_allows() -> None:
    proposal = schema("proposal_request")["properties"]
    assert set(proposal["channel"]["enum"]) == CHANNELS
    assert set(proposal["proposal"]["properties"]["action"]["enum"]) == ACTIONS
    assert set(proposal["proposal"]["properties"]["category"]["enum"]) == CATEGORIES
    signal = schema("signal_request")["properties"]
    assert set(signal["signal"]["properties"]["type"]["enum"]) == SIGNAL_TYPES
