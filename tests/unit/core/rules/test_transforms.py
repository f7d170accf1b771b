"""Transforms of approved content: known facts, banned phrases, PII redaction, AI disclosure and
maximum length, in that order; the policy sections read strictly."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.decision import APPROVED, DEFERRED, SUPPRESSED
from pipeline.core.policy import (
    DAY_MS,
    HOUR_MS,
    BannedPhrases,
    Disclosure,
    FrequencyCap,
    LoopPrevention,
    MaxLength,
    Policy,
    QuietHours,
)
from pipeline.core.policy_document import load_policy
from tests.factories import T0, decide_all, signal
from tests.unit.core.policy_mistakes import HEAD, assert_one_mistake
from tests.unit.core.rules.service_messages import TEMPLATES, msg

REWRITE = Policy(caps=(), loop_prevention=LoopPrevention(TEMPLATES, action="rewrite"))


def run(events, policy):
    return decide_all(events, policy)


def rules_in(d):
    return [s.rule for s in d.trace]


PROFILE = signal("profile_updated", at=T0, email="jo@example.com", timezone="UTC")


def test_rewritten_known_pii_is_masked_by_redaction():
    policy = replace(REWRITE, redact_pii=frozenset({"email"}))
    decisions, _ = run([PROFILE, msg("ask-contact: reach you?")], policy)
    assert decisions[-1].action.content == "ask-contact: reach you? [known: email=[email]]"


DISCLOSE = Policy(caps=(), disclosure=Disclosure("[AI]", repeat_after_ms=DAY_MS))


@pytest.mark.parametrize(
    ("events", "contents"),
    [
        # once per conversation ...
        (
            [msg("hi", conversation_id="k1"), msg("again", at=T0 + 2, conversation_id="k1")],
            ["[AI] hi", "again"],
        ),
        # ... each conversation on its own ...
        (
            [msg("hi", conversation_id="k1"), msg("hi", at=T0 + 2, conversation_id="k2")],
            ["[AI] hi", "[AI] hi"],
        ),
        # ... per channel without a conversation ...
        (
            [msg("a"), msg("b", at=T0 + 2), msg("c", at=T0 + 3, channel="sms")],
            ["[AI] a", "b", "[AI] c"],
        ),
        # ... and again after repeat_after_ms
        ([msg("a"), msg("b", at=T0 + 1 + DAY_MS)], ["[AI] a", "[AI] b"]),
        # human-written messages are not disclosed, and do not count as the disclosure
        ([msg("a", ai_generated=False), msg("b", at=T0 + 2)], ["a", "[AI] b"]),
    ],
)
def test_ai_disclosure(events, contents):
    decisions, _ = run(events, DISCLOSE)
    assert [d.action.content for d in decisions] == contents
    for d, text in zip(decisions, contents, strict=True):
        assert ("disclosure" in rules_in(d)) is text.startswith("[AI]")


def test_disclosure_is_not_remembered_for_a_suppressed_message():
    policy = replace(DISCLOSE, banned_phrases=BannedPhrases(("refund",)))
    decisions, state = run([msg("a refund"), msg("b", at=T0 + 2)], policy)
    assert [d.outcome for d in decisions] == [SUPPRESSED, APPROVED]
    assert decisions[1].action.content == "[AI] b"
    assert state.disclosed == {"ch:chat": T0 + 2}


@pytest.mark.parametrize(
    ("kinds", "content", "expected", "step"),
    [
        (
            {"card", "email"},
            "card 4111 1111 1111 1111, mail jo@x.de",
            "card [card], mail [email]",
            True,
        ),
        (
            {"iban", "phone"},
            "IBAN DE89370400440532013000 / +49 30 1234567",
            "IBAN [iban] / [phone]",
            True,
        ),
        ({"card"}, "card 4111 1111 1111 1112", "card 4111 1111 1111 1112", False),  # not Luhn
        (set(), "mail jo@x.de", "mail jo@x.de", False),  # off
    ],
)
def test_pii_redaction(kinds, content, expected, step):
    [d], _ = run([msg(content)], Policy(caps=(), redact_pii=frozenset(kinds)))
    assert d.outcome == APPROVED
    assert d.action.content == expected
    assert ("pii_redaction" in rules_in(d)) is step


@pytest.mark.parametrize(
    ("action", "content", "outcome", "expected"),
    [
        ("suppress", "Returns are GUARANTEED", SUPPRESSED, None),
        ("redact", "Returns are GUARANTEED", APPROVED, "Returns are [removed]"),
        ("suppress", "Returns are easy", APPROVED, "Returns are easy"),
    ],
)
def test_banned_phrases(action, content, outcome, expected):
    policy = Policy(
        caps=(FrequencyCap("one", limit=1, window_ms=HOUR_MS),),
        banned_phrases=BannedPhrases(("guaranteed", "risk-free"), action),
    )
    decisions, state = run([msg(content)], policy)
    d = decisions[0]
    assert d.outcome == outcome
    if outcome == SUPPRESSED:
        assert d.rule == "banned_phrases"
        assert "banned phrase 'GUARANTEED'" in d.reason
        assert state.contacts == ()  # a suppressed message consumes no contact
    else:
        assert d.action.content == expected


@pytest.mark.parametrize(
    ("action", "channel", "content", "outcome", "expected"),
    [
        ("truncate", "sms", "x" * 20, APPROVED, "x" * 9 + "…"),
        ("truncate", "sms", "x" * 10, APPROVED, "x" * 10),  # exactly at the limit
        ("truncate", "chat", "x" * 20, APPROVED, "x" * 20),  # channel without a limit
        ("suppress", "sms", "x" * 11, SUPPRESSED, None),
    ],
)
def test_max_length(action, channel, content, outcome, expected):
    policy = Policy(caps=(), max_length=MaxLength({"sms": 10}, action))
    [d], _ = run([msg(content, channel=channel)], policy)
    assert d.outcome == outcome
    if expected is None:
        assert d.rule == "max_length" and "11 > 10 characters on sms" in d.reason
    else:
        assert d.action.content == expected


def test_length_is_checked_after_the_disclosure_is_prepended():
    policy = replace(DISCLOSE, max_length=MaxLength({"chat": 10}))
    [d], _ = run([msg("1234567")], policy)
    assert d.action.content == "[AI] 1234…"
    assert rules_in(d)[-2:] == ["disclosure", "max_length"]


def test_blocked_proposals_are_not_transformed_and_deferred_ones_are():
    policy = replace(
        DISCLOSE,
        quiet_hours=QuietHours("21:00", "08:00", "UTC", {"service": "defer"}),
    )
    night = T0 + 22 * HOUR_MS  # 22:00 UTC
    [d], _ = run([msg("hi", at=night)], policy)
    assert d.outcome == DEFERRED
    assert d.action.content == "[AI] hi"
    [d], _ = run([msg("hi", category="marketing")], DISCLOSE)  # no opt-in: consent blocks
    assert d.outcome == SUPPRESSED and "disclosure" not in rules_in(d)


@settings(max_examples=50)
@given(st.text(max_size=300), st.integers(min_value=2, max_value=200))
def test_content_never_exceeds_the_channel_limit(content, limit):
    policy = Policy(
        caps=(),
        disclosure=Disclosure("AI:"),
        redact_pii=frozenset({"card", "email", "phone", "iban"}),
        max_length=MaxLength({"chat": limit}),
    )
    [d], _ = run([msg(content)], policy)
    assert d.outcome == APPROVED
    assert len(d.action.content) <= limit


def test_empty_disclosure_text_is_off():
    assert load_policy(HEAD + "disclosure: {text: ''}\n").disclosure == Disclosure()


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("disclosure:\n  text: [AI]\n", 4, "disclosure.text", "must be a string"),
        ("disclosure:\n  repeat_after_ms: -5\n", 4, "disclosure.repeat_after_ms", "0 switches"),
        ("redact_pii: [card, ssn]\n", 3, "redact_pii[1]", "valid: card, email, iban, phone"),
        ("redact_pii: card\n", 3, "redact_pii", "must be a list"),
        ("banned_phrases:\n  phrases: guaranteed\n", 4, "banned_phrases.phrases", "list of p"),
        ("banned_phrases:\n  phrases: [a, a]\n", 4, "banned_phrases.phrases[1]", "listed twice"),
        ("banned_phrases:\n  action: mute\n", 4, "banned_phrases.action", "valid: redact, su"),
        ("max_length:\n  channels: {fax: 10}\n", 4, "max_length.channels.fax", "valid keys"),
        ("max_length:\n  channels: {sms: 1}\n", 4, "max_length.channels.sms", ">= 2"),
        ("max_length:\n  action: wrap\n", 4, "max_length.action", "valid: suppress, truncate"),
    ],
)
def test_each_mistake_is_reported_with_line_and_hint(body, line, path, hint):
    assert_one_mistake(body, line, path, hint)
