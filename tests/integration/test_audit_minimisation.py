"""Data minimisation on the real broker: a worker under `audit: {input: redacted, content:
hash}` writes no e-mail address to the audit topic, equal content hashes alike, and `tower
replay` counts the decisions that needed the missing text apart from mismatches.

The levels are applied by the processing layer both runtimes share
(pipeline/processing/records.py), so one runtime (the default, Faust) is enough here."""

from __future__ import annotations

import hashlib
import time

import orjson
import pytest
from click.testing import CliRunner, Result

from pipeline.contracts.codec import encode_event
from pipeline.kafka.reader import scan_topic
from pipeline.ops.cli import main
from pipeline.settings import Settings
from tests.factories import consent, proposal, signal
from tests.kafka_io import consume_until, produce

pytestmark = pytest.mark.integration

POLICY = """
version: 1.0.0
redact_pii: [phone]
audit:
  input: redacted
  content: hash
  salt: s
"""
EMAIL, NEW_EMAIL, PHONE = "mina@example.com", "mina.new@example.com", "+49 30 1234567"


def tower(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=settings.to_env())


def events(now: int) -> list:
    def pitch(customer: str, at: int, content: str, **kw: object) -> object:
        return proposal(customer, at, channel="sms", category="service", content=content, **kw)

    return [
        consent(True, customer="mina", at=now - 10),
        signal("profile_updated", "mina", now - 5, email=EMAIL),
        pitch("mina", now, f"Your order ships today, {EMAIL}", asserts={"contact": EMAIL}),
        pitch("mina", now + 1, f"Call me on {PHONE}"),  # the PII transform needs the text
        pitch("mina", now + 2, "Noted", asserts={"contact": NEW_EMAIL}),  # contradicts EMAIL
        consent(True, customer="otto", at=now - 10),
        pitch("otto", now, "See you soon"),
        pitch("otto", now + 1, "See you soon"),
    ]


def test_redacted_and_hashed_audit_keeps_no_email_and_replay_says_what_it_cannot_check(
    tower_settings, worker, tmp_path
):
    s = tower_settings
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    worker.extra_env["TOWER_POLICY_FILE"] = str(policy_file)
    sent = events(int(time.time() * 1000))
    worker.start()
    produce(s.bootstrap, s.topics.events, [(e.customer_id.encode(), encode_event(e)) for e in sent])
    seen = consume_until(
        s.bootstrap,
        {"audit": s.topics.audit},
        lambda got: len(got["audit"]) >= len(sent),
        decided=s,
    )
    audits = [a.value for a in seen["audit"]]
    assert len(audits) == len(sent), worker.log_tail()
    by_event = {a["event_id"]: a for a in audits}
    outcomes = [by_event[e.event_id]["outcome"] for e in sent]
    assert outcomes == ["recorded"] * 2 + ["approved", "approved", "suppressed"] + [
        "recorded",
        "approved",
        "approved",
    ]

    # nothing on the topic names an address or the phone number, in any field
    raw = [r.value or b"" for r in scan_topic(s, s.topics.audit)]
    assert len(raw) == len(sent)
    for value in raw:
        assert b"example.com" not in value and b"1234567" not in value, value
    contradiction = by_event[sent[4].event_id]
    assert contradiction["rule"] == "consistency_ledger"
    assert contradiction["reason"].startswith(
        "contact='[redacted:email]' contradicts '[redacted:email]' told by"
    )
    kept = orjson.loads(by_event[sent[2].event_id]["input"])["proposal"]
    assert kept["asserts"] == {"contact": "[redacted:email]"}
    assert (
        kept["content"]
        == "sha256:" + hashlib.sha256(f"sYour order ships today, {EMAIL}".encode()).hexdigest()
    )
    otto = [orjson.loads(by_event[e.event_id]["input"])["proposal"]["content"] for e in sent[6:]]
    assert otto[0] == otto[1]  # equal content stays comparable

    res = tower(s, "replay", "--all", "--policy", str(policy_file))
    print(res.output)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"decisions replayed  {len(sent)}\n" in out
    assert "matched             6 (75.00%)" in out
    assert "mismatched          0" in out
    assert (
        "unverifiable        2 decisions differ, but their input was minimised "
        "(audit.input=redacted, audit.content=hash)"
    ) in out
    for event, what in ((sent[3], "trace"), (sent[4], "outcome")):
        line = next(
            x for x in out.splitlines() if x.startswith(by_event[event.event_id]["decision_id"])
        )
        assert "unverifiable" in line and f"differs in {what}" in line, line

    explained = tower(s, "explain", by_event[sent[2].event_id]["decision_id"])
    assert explained.exit_code == 0, explained.output
    assert "content 'sha256:" in explained.stdout and "asserts contact=[redacted:email]" in (
        explained.stdout
    )
