"""Data minimisation in the audit: what each `audit` level keeps of the input, the policy
block that sets it (and its hash), what replay can still re-check, and a property: with
`input: none` no value of an event's free text is left anywhere in its audit records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.codec import decode_record, encode_record
from pipeline.contracts.events import AgentEvent, Source, event_to_dict
from pipeline.core import audit_minimisation as am
from pipeline.core.policy import DEFAULT_POLICY, AuditLevels, Policy
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError, load_policy
from pipeline.core.replay import (
    MATCH,
    MISMATCH,
    NOT_KEPT,
    UNVERIFIABLE,
    catalog,
    replay_all,
    summarize,
)
from pipeline.processing.records import audit_record
from tests.factories import T0, consent, decide_all, proposal, signal

EMAIL, PHONE = "ana@example.com", "+49 30 1234567"
IBAN = "DE89 3704 0044 0532 0130 00"
CONTENT = f"Hi, we will write to {EMAIL} or call {PHONE}"
ASSERTS = {"iban": IBAN, "delivery": "Monday"}
ATTRS = {"email": EMAIL, "note": "prefers mornings"}

FULL = AuditLevels()
REDACTED = AuditLevels(input="redacted")
NONE = AuditLevels(input="none")
C_REDACTED = AuditLevels(content="redacted")
C_HASH = AuditLevels(content="hash", salt="s")
R_HASH = AuditLevels(input="redacted", content="hash", salt="s")


def pitch() -> AgentEvent:
    return proposal("c1", T0, event_id="p1", content=CONTENT, asserts=ASSERTS)


def note() -> AgentEvent:
    return signal("profile_updated", "c1", T0, event_id="s1", **ATTRS)


def kept(event: AgentEvent, levels: AuditLevels) -> dict[str, Any]:
    return orjson.loads(am.input_json(event, levels))


# -- what each level keeps --------------------------------------------------------------

HASHED = am.hash_content(CONTENT, "s")
MARKED = "Hi, we will write to [redacted:email] or call [redacted:phone]"
MARKED_ASSERTS = {"iban": "[redacted:iban]", "delivery": "Monday"}


@pytest.mark.parametrize(
    ("levels", "content", "asserts"),
    [
        (FULL, CONTENT, ASSERTS),
        (C_REDACTED, MARKED, ASSERTS),
        (C_HASH, HASHED, ASSERTS),
        (REDACTED, MARKED, MARKED_ASSERTS),
        (R_HASH, HASHED, MARKED_ASSERTS),
    ],
    ids=["full", "content-redacted", "content-hash", "input-redacted", "redacted+hash"],
)
def test_each_level_keeps_this_of_a_proposal(levels, content, asserts):
    p = kept(pitch(), levels)["proposal"]
    assert (p["content"], p["asserts"]) == (content, asserts)
    assert p["action"] == "message" and p["priority"] == 50  # the rest is untouched


@pytest.mark.parametrize(
    ("levels", "attributes"),
    [
        (FULL, ATTRS),
        (C_HASH, ATTRS),  # content levels concern proposals only
        (REDACTED, {"email": "[redacted:email]", "note": "prefers mornings"}),
    ],
)
def test_each_level_keeps_this_of_a_signal(levels, attributes):
    assert kept(note(), levels)["signal"]["attributes"] == attributes


@pytest.mark.parametrize("event", [pitch(), note()], ids=["proposal", "signal"])
def test_none_keeps_a_stub_naming_the_event_only(event):
    stub = kept(event, NONE)
    assert stub == {
        "event_id": event.event_id,
        "customer_id": "c1",
        "kind": event.kind,
        "agent": event.agent,
        "audit_input": "none",
    }
    assert am.STUB_MARK not in kept(event, FULL)


def test_full_levels_write_the_record_of_before_byte_for_byte():
    d = decide_all([pitch()], DEFAULT_POLICY)[0][0]
    source = Source("agent-events", 0, 7, T0)
    rec = audit_record(d, pitch(), source, T0)
    assert rec == audit_record(d, pitch(), source, T0, FULL)
    assert rec["input"] == orjson.dumps(event_to_dict(pitch())).decode()


# -- hashes -----------------------------------------------------------------------------


def test_equal_content_hashes_equal_and_the_salt_matters():
    a = am.hash_content(CONTENT, "s")
    assert a == am.hash_content(CONTENT, "s")
    assert a.startswith("sha256:") and len(a) == len("sha256:") + 64
    assert a != am.hash_content(CONTENT + ".", "s")
    assert a != am.hash_content(CONTENT, "t")
    assert am.minimised_content(None, C_HASH) is None


@given(st.text(), st.text(), st.text(min_size=1))
def test_a_hash_is_equal_exactly_when_the_content_is(a, b, salt):
    assert (am.hash_content(a, salt) == am.hash_content(b, salt)) == (a == b)


# -- reasons and traces -----------------------------------------------------------------

LEDGER = "delivery='Monday' contradicts 'call ana@example.com' told by bot at 5"


@pytest.mark.parametrize(
    ("levels", "rule", "text", "expected"),
    [
        (FULL, "consistency_ledger", LEDGER, LEDGER),
        (C_HASH, "consistency_ledger", LEDGER, LEDGER),  # content levels leave reasons
        (
            REDACTED,
            "consistency_ledger",
            LEDGER,
            "delivery='Monday' contradicts 'call [redacted:email]' told by bot at 5",
        ),
        (
            NONE,
            "consistency_ledger",
            LEDGER,
            "delivery=[not kept] contradicts [not kept] told by bot at 5",
        ),
        (
            NONE,
            "consistency_ledger",
            "k=\"it's\" contradicts 'a\\'b' told",
            "k=[not kept] contradicts [not kept] told",
        ),
        (
            NONE,
            "frequency_cap",
            "cap daily: 3/3 contacts on channel email",
            "cap daily: 3/3 contacts on channel email",
        ),
        (NONE, "banned_phrases", f"wrote to {EMAIL}", "wrote to [redacted:email]"),
    ],
)
def test_reasons_get_the_treatment_of_the_input(levels, rule, text, expected):
    assert am.minimised_reason(text, rule, levels) == expected


def test_a_contradiction_keeps_its_decision_but_not_the_values():
    told = proposal("c1", T0, event_id="a", channel="sms", category="service", asserts=ASSERTS)
    other = proposal(
        "c1", T0 + 1, event_id="b", channel="sms", category="service", asserts={"iban": "X1"}
    )
    decisions, _ = decide_all([told, other], DEFAULT_POLICY)
    rec = audit_record(decisions[1], other, Source("t", 0, 1), T0, NONE)
    assert (rec["outcome"], rec["rule"]) == ("suppressed", "consistency_ledger")
    assert rec["reason"].startswith("iban=[not kept] contradicts [not kept] told by")
    assert IBAN not in orjson.dumps(rec).decode() and "X1" not in orjson.dumps(rec).decode()


# -- the policy block -------------------------------------------------------------------

HEAD = "version: 1.0.0\n"  # line 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", FULL),
        ("audit: {}\n", FULL),
        ("audit: {input: full, content: full}\n", FULL),
        ("audit: {input: none}\n", NONE),
        ("audit: {input: redacted}\n", REDACTED),
        ("audit:\n  input: redacted\n  content: hash\n  salt: s\n", R_HASH),
        ("audit: {content: redacted}\n", C_REDACTED),
        ("audit: {content: hash, salt: '2026'}\n", AuditLevels(content="hash", salt="2026")),
    ],
)
def test_the_document_reads_the_audit_block(body, expected):
    assert load_policy(HEAD + body).audit == expected


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("audit:\n  input: some\n", 3, "audit.input", "valid: full, none, redacted"),
        ("audit:\n  content: md5\n", 3, "audit.content", "valid: full, hash, redacted"),
        ("audit:\n  input: full\n  content: hash\n", 3, "audit.salt", "required with content"),
        ("audit:\n  content: redacted\n  salt: s\n", 4, "audit.salt", "only used with content"),
        ("audit:\n  input: none\n  content: hash\n  salt: s\n", 4, "audit.content", "keeps no"),
        ("audit:\n  input: none\n  salt: s\n", 4, "audit.salt", "keeps no content"),
        ("audit:\n  input: redacted\n  content: full\n", 4, "audit.content", "use redacted or"),
        ("audit:\n  content: hash\n  salt: ''\n", 4, "audit.salt", "non-empty string"),
        ("audit:\n  retention_ms: 5\n", 3, "audit.retention_ms", "valid keys: content, input"),
        ("audit: none\n", 2, "audit", "must be a mapping with keys: content, input, salt"),
    ],
)
def test_a_bad_audit_block_is_refused_with_its_line(body, line, path, hint):
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + body, "p.yaml")
    issues = err.value.issues
    assert len(issues) == 1, issues
    assert (issues[0].line, issues[0].path) == (line, path)
    assert hint in issues[0].message
    assert str(err.value).startswith(f"p.yaml:{line}: {path}: ")


def test_a_policy_without_the_block_keeps_its_hash():
    assert Policy().policy_version == "1.0.0+747d035d5eff"
    assert load_policy(HEAD + "audit: {input: full}\n").policy_version == Policy().policy_version
    versions = {replace(DEFAULT_POLICY, audit=lv).policy_version for lv in (FULL, NONE, C_HASH)}
    assert len(versions) == 3
    assert replace(DEFAULT_POLICY, audit=C_HASH) != replace(
        DEFAULT_POLICY, audit=AuditLevels(content="hash", salt="t")
    )
    assert policy_changes(DEFAULT_POLICY, replace(DEFAULT_POLICY, audit=NONE)) == [
        "audit.input: full -> none"
    ]


def test_levels_describe_themselves_as_written():
    assert [lv.describe() for lv in (FULL, NONE, R_HASH, C_REDACTED)] == [
        "audit.input=full",
        "audit.input=none",
        "audit.input=redacted, audit.content=hash",
        "audit.content=redacted",
    ]
    assert REDACTED.content_level == "redacted" and FULL.content_level == "full"


# -- replay -----------------------------------------------------------------------------


def recorded(events: list[AgentEvent], policy: Policy) -> list[dict[str, Any]]:
    """The audit records the worker would write under `policy`, Avro round-tripped."""
    decisions, _ = decide_all(events, policy)
    return [
        decode_record(
            "audit_record",
            encode_record("audit_record", audit_record(d, ev, Source("t", 0, i), T0, policy.audit)),
        )
        for i, (d, ev) in enumerate(zip(decisions, events, strict=True))
    ]


def story() -> list[AgentEvent]:
    return [
        consent(True, at=T0 - 1),
        note(),
        proposal("c1", T0, event_id="p1", content=CONTENT, channel="sms", category="service"),
        proposal("c1", T0 + 1, event_id="p2", content="plain", channel="sms", category="service"),
    ]


def statuses(policy: Policy, events: list[AgentEvent] | None = None, forge: int = -1) -> list[str]:
    records = recorded(events or story(), policy)
    if forge >= 0:
        records[forge] = {**records[forge], "outcome": "suppressed"}
    return [r.status for r in replay_all(records, catalog([policy]))]


PII_OUT = replace(DEFAULT_POLICY, redact_pii=frozenset({"email", "phone"}))


@pytest.mark.parametrize(
    ("policy", "forge", "expected"),
    [
        (DEFAULT_POLICY, -1, [MATCH] * 4),
        (DEFAULT_POLICY, 3, [MATCH, MATCH, MATCH, MISMATCH]),
        (replace(DEFAULT_POLICY, audit=NONE), -1, [NOT_KEPT] * 4),
        (replace(DEFAULT_POLICY, audit=NONE), 3, [NOT_KEPT] * 4),
        # decisions that do not depend on the text match on a redacted or hashed input
        (replace(DEFAULT_POLICY, audit=R_HASH), -1, [MATCH] * 4),
        (replace(DEFAULT_POLICY, audit=C_HASH), -1, [MATCH] * 4),
        # a forgery after the first changed input cannot be told from the missing text ...
        (replace(DEFAULT_POLICY, audit=R_HASH), 3, [MATCH, MATCH, MATCH, UNVERIFIABLE]),
        # ... but before it, on inputs minimisation left alone, it is still caught
        (replace(DEFAULT_POLICY, audit=REDACTED), 0, [MISMATCH, MATCH, MATCH, MATCH]),
        # the PII transform's trace step needs the original text: not re-checkable
        (replace(PII_OUT, audit=REDACTED), -1, [MATCH, MATCH, UNVERIFIABLE, MATCH]),
        (PII_OUT, -1, [MATCH] * 4),
    ],
    ids=[
        "full",
        "full-forged",
        "none",
        "none-forged",
        "redacted+hash",
        "hash",
        "hash-forged-late",
        "redacted-forged-early",
        "redacted-pii-transform",
        "pii-transform-full",
    ],
)
def test_replay_tells_what_it_cannot_recheck(policy, forge, expected):
    assert statuses(policy, forge=forge) == expected


def test_the_summary_counts_what_was_not_kept_apart_from_mismatches():
    none = replace(DEFAULT_POLICY, audit=NONE)
    redacted = replace(PII_OUT, audit=REDACTED)
    records = recorded(story(), none) + recorded(
        [replace(e, customer_id="c2") for e in story()], redacted
    )
    results = replay_all(records, catalog([none, redacted]))
    s = summarize(results)
    assert (s.replayed, s.matched, s.mismatched, s.not_kept, s.unverifiable) == (8, 3, 0, 4, 1)
    assert s.not_kept_levels == ("audit.input=none",)
    assert s.unverifiable_levels == ("audit.input=redacted",)
    assert s.ok
    first, later, *_ = (r for r in results if r.status == NOT_KEPT)
    assert first.detail == "input not kept (audit.input=none)"
    assert later.detail.startswith("follows d-") and "whose input was not kept" in later.detail
    odd = next(r for r in results if r.status == UNVERIFIABLE)
    assert odd.detail.startswith("differs in trace, but the input was minimised")


# -- the property -----------------------------------------------------------------------

#: every generated value starts with this, so finding it anywhere means a value leaked
SECRET = "zq"
values = st.text(max_size=12).map(lambda t: SECRET + t)
#: attribute keys of free text; ids such as case_id are kept as identifiers, by design
keys = st.sampled_from(["note", "email", "order_id", "text", "score", "timezone"])
free_text = st.dictionaries(keys, values, max_size=3)


@st.composite
def histories(draw: st.DrawFn) -> list[AgentEvent]:
    out: list[AgentEvent] = [consent(True, at=T0 - 1)]
    for i in range(draw(st.integers(1, 8))):
        at = T0 + i * 1000
        if draw(st.booleans()):
            out.append(
                proposal(
                    "c1",
                    at,
                    event_id=f"p{i}",
                    channel=draw(st.sampled_from(["sms", "email"])),
                    category=draw(st.sampled_from(["service", "marketing"])),
                    content=draw(st.none() | values),
                    asserts=draw(st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2)),
                    trigger=draw(st.sampled_from([None, "t1"])),
                )
            )
        else:
            kind = draw(st.sampled_from(["profile_updated", "message_received", "purchase"]))
            out.append(signal(kind, "c1", at, event_id=f"s{i}", **draw(free_text)))
    return out


SHOWCASE = replace(
    DEFAULT_POLICY,
    audit=NONE,
    redact_pii=frozenset({"email"}),
    max_length=replace(DEFAULT_POLICY.max_length, channels={"sms": 8}),
)


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from([replace(DEFAULT_POLICY, audit=NONE), SHOWCASE]))
def test_with_input_none_no_record_holds_any_free_text_value(events, policy):
    decisions, _ = decide_all(events, policy)
    for i, (d, ev) in enumerate(zip(decisions, events, strict=True)):
        rec = audit_record(d, ev, Source("t", 0, i), T0, policy.audit)
        text = orjson.dumps(rec).decode("utf-8") + repr(rec)
        assert SECRET not in text, rec


RAW_JSON = b'{"customer_id": "c1", "content": "mail a@b.de or call +49 30 1234567"'  # cut short
RAW_BINARY = b"\xc3\x01\xff\xfe a@b.de"


@pytest.mark.parametrize(
    ("levels", "raw", "kept", "detail_has"),
    [
        (FULL, RAW_JSON, RAW_JSON, None),
        (FULL, RAW_BINARY, RAW_BINARY, None),
        (
            REDACTED,
            RAW_JSON,
            b'{"customer_id": "c1", "content": "mail [redacted:email] or call [redacted:phone]"',
            None,
        ),
        (
            C_REDACTED,
            RAW_JSON,
            b'{"customer_id": "c1", "content": "mail [redacted:email] or call [redacted:phone]"',
            None,
        ),
        (REDACTED, RAW_BINARY, b"", f"raw value not kept: {len(RAW_BINARY)} bytes, sha256:"),
        (NONE, RAW_JSON, b"", f"raw value not kept: {len(RAW_JSON)} bytes, sha256:"),
        (C_HASH, RAW_JSON, b"", "raw value not kept"),
    ],
)
def test_a_dead_letter_keeps_its_raw_value_as_the_audit_keeps_input(levels, raw, kept, detail_has):
    detail = "bad_json: 'a@b.de' at char 70"
    value, out = am.minimised_raw(raw, detail, levels)
    assert value == kept
    # the detail is treated like a reason of the audit
    assert out.startswith(am.minimised_reason(detail, None, levels))
    assert (detail_has is None) == (out == am.minimised_reason(detail, None, levels))
    if detail_has is not None:
        assert detail_has in out


def test_a_dead_letter_digest_matches_the_producers_copy_with_the_salt():
    _, one = am.minimised_raw(RAW_JSON, "d", C_HASH)
    _, two = am.minimised_raw(RAW_JSON, "d", C_HASH)
    _, other_salt = am.minimised_raw(RAW_JSON, "d", replace(C_HASH, salt="t"))
    assert one == two != other_salt
