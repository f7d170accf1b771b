"""The worker's batch processor writes audit records at the deciding policy's `audit`
levels, for decided and for released (held) proposals alike: both runtimes share it."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from pipeline.contracts.codec import encode_event
from pipeline.contracts.events import AgentEvent
from pipeline.core.policy import DEFAULT_POLICY, AuditLevels, HoldWindows, Policy
from pipeline.processing.batch import BatchProcessor, DictStateStore, InputRecord
from pipeline.settings import Settings
from tests.factories import T0, consent, proposal, signal
from tests.unit.processing.test_batch_processor import by_topic

SETTINGS = Settings()
EMAIL = "ana@example.com"


def run(policy: Policy, events: list[AgentEvent]) -> tuple[list[dict], list[str]]:
    """(audit records, the reasons the live feed was shown) of one batch."""
    records = [
        InputRecord(b"c1", encode_event(ev), 0, i, ev.occurred_at) for i, ev in enumerate(events)
    ]
    processor = BatchProcessor(SETTINGS, policy=lambda: policy, clock=lambda: 1.0)
    shown: list[str] = []
    processor.feed = lambda d, _ev, _now: shown.append(d.reason)
    outputs = processor.process_and_save(records, DictStateStore()).outputs
    return by_topic(outputs)["audit_record"], shown


def audits(policy: Policy) -> list[dict]:
    events = [
        consent(True, at=T0 - 1),
        proposal("c1", T0, content=f"write to {EMAIL}", trigger="t1", asserts={"to": EMAIL}),
        signal("profile_updated", "c1", T0 + 5_000, email=EMAIL),  # releases the hold first
    ]
    return run(policy, events)[0]


HOLDING = replace(DEFAULT_POLICY, holds=HoldWindows(hold_ms={"message": 1_000}))


@pytest.mark.parametrize(
    ("levels", "email_kept"),
    [
        (AuditLevels(), True),
        (AuditLevels(content="hash", salt="s"), True),  # the asserts are kept in full
        (AuditLevels(input="redacted"), False),
        (AuditLevels(input="redacted", content="hash", salt="s"), False),
        (AuditLevels(input="none"), False),
    ],
)
def test_every_audit_record_is_kept_at_the_policys_levels(levels, email_kept):
    got = audits(replace(HOLDING, audit=levels))
    assert [a["outcome"] for a in got] == ["recorded", "held", "approved", "recorded"]
    assert any(EMAIL in orjson.dumps(a).decode() for a in got) == email_kept
    if levels.input == "none":
        assert all(orjson.loads(a["input"])["audit_input"] == "none" for a in got)
    if levels.content == "hash":
        contents = [orjson.loads(a["input"])["proposal"]["content"] for a in got[1:3]]
        assert contents[0] == contents[1] and contents[0].startswith("sha256:")


@pytest.mark.parametrize(
    ("levels", "reason"),
    [
        (AuditLevels(), "to='ana@example.com' contradicts 'bo@example.com' told by"),
        (AuditLevels(input="redacted"), "to='[redacted:email]' contradicts '[redacted:email]'"),
        (AuditLevels(input="none"), "to=[not kept] contradicts [not kept] told by"),
    ],
)
def test_the_live_feed_shows_the_reason_as_the_audit_keeps_it(levels, reason):
    told = proposal("c1", T0, channel="sms", category="service", asserts={"to": "bo@example.com"})
    other = proposal("c1", T0 + 1, channel="sms", category="service", asserts={"to": EMAIL})
    got, shown = run(replace(DEFAULT_POLICY, audit=levels), [told, other])
    assert got[1]["reason"].startswith(reason) and shown[1] == got[1]["reason"]


@pytest.mark.parametrize(
    ("levels", "email_kept"),
    [
        (AuditLevels(), True),
        (AuditLevels(input="redacted"), False),
        (AuditLevels(content="hash", salt="s"), False),
        (AuditLevels(input="none"), False),
    ],
)
def test_a_dead_letter_is_kept_at_the_policys_levels(levels, email_kept):
    bad = b'{"customer_id": "c1", "kind": "proposal", "content": "write to ' + EMAIL.encode()
    processor = BatchProcessor(
        SETTINGS, policy=lambda: replace(DEFAULT_POLICY, audit=levels), clock=lambda: 1.0
    )
    outputs = processor.process_and_save([InputRecord(b"c1", bad, 0, 0, T0)], DictStateStore())
    (dead,) = by_topic(outputs.outputs)["dead_letter"]
    assert dead["reason"] == "bad_json"
    assert (EMAIL.encode() in dead["raw_value"]) == email_kept
