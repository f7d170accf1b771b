"""Policy documents: the escalation, loop prevention and transform keys, read strictly."""

from __future__ import annotations

import pytest

from pipeline.core.policy import (
    BannedPhrases,
    Disclosure,
    Escalation,
    LoopPrevention,
    MaxLength,
)
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError, load_policy

HEAD = "version: 1.0.0\nagents: [care-bot, promo-bot]\n"  # lines 1-2


def test_new_settings_are_read_into_the_policy():
    policy = load_policy(
        HEAD
        + "escalation: {repeat_contacts: 3, repeat_window_ms: 3600000, negative_streak: 2,"
        + " sentiment_threshold: -0.3, explicit_request: true, queue: tier-2,"
        + " consistency_escalates: true}\n"
        + "loop_prevention:\n"
        + "  templates:\n"
        + "    ask-order: {asks: [order_number]}\n"
        + "    'ask contact:': {asks: [email, phone]}\n"
        + "  action: rewrite\n"
        + "disclosure: {text: '[AI]', repeat_after_ms: 86400000}\n"
        + "redact_pii: [card, iban]\n"
        + "banned_phrases: {phrases: [guaranteed, no risk], action: redact}\n"
        + "max_length: {channels: {sms: 160, push: 90}, action: suppress}\n"
    )
    assert policy.escalation == Escalation(3, 3_600_000, 2, -0.3, True, "tier-2", True)
    assert policy.loop_prevention == LoopPrevention(
        {"ask-order": frozenset({"order_number"}), "ask contact:": frozenset({"email", "phone"})},
        "rewrite",
    )
    assert policy.disclosure == Disclosure("[AI]", 86_400_000)
    assert policy.redact_pii == frozenset({"card", "iban"})
    assert policy.banned_phrases == BannedPhrases(("guaranteed", "no risk"), "redact")
    assert policy.max_length == MaxLength({"sms": 160, "push": 90}, "suppress")


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("escalation:\n  repeat_contacts: -1\n", 4, "escalation.repeat_contacts", ">= 0"),
        ("escalation:\n  repeat_window_ms: 0\n", 4, "escalation.repeat_window_ms", "> 0"),
        ("escalation:\n  negative_streak: two\n", 4, "escalation.negative_streak", "integer"),
        ("escalation:\n  sentiment_threshold: low\n", 4, "escalation.sentiment_threshold", "num"),
        ("escalation:\n  explicit_request: maybe\n", 4, "escalation.explicit_request", "true"),
        ("escalation:\n  queue: ''\n", 4, "escalation.queue", "non-empty string"),
        ("escalation:\n  consistency_escalates: 1\n", 4, "escalation.consistency_escalates", "t"),
        ("escalation:\n  queues: [a]\n", 4, "escalation.queues", "valid keys: consistency_e"),
        ("loop_prevention:\n  action: ignore\n", 4, "loop_prevention.action", "rewrite, suppr"),
        ("loop_prevention:\n  templates: [a]\n", 4, "loop_prevention.templates", "template id"),
        (
            "loop_prevention:\n  templates:\n    ask: {asks: []}\n",
            5,
            "loop_prevention.templates.ask.asks",
            "at least one fact",
        ),
        (
            "loop_prevention:\n  templates:\n    ask: email\n",
            5,
            "loop_prevention.templates.ask",
            "must be a mapping with keys: asks",
        ),
        (
            "loop_prevention:\n  templates:\n    ask:\n      asks: [Order Number]\n",
            6,
            "loop_prevention.templates.ask.asks",
            "not snake_case",
        ),
        (
            "loop_prevention:\n  templates:\n    ask: {asks: [email]}\n    ask: {asks: [phone]}\n",
            6,
            "loop_prevention.templates.ask",
            "duplicate template id",
        ),
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
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + body, "p.yaml")
    issues = err.value.issues
    assert len(issues) == 1, issues
    assert issues[0].line == line
    assert issues[0].path == path
    assert hint in issues[0].message
    assert str(err.value).startswith(f"p.yaml:{line}: {path}: ")


def test_empty_disclosure_text_is_off():
    assert load_policy(HEAD + "disclosure: {text: ''}\n").disclosure == Disclosure()


def test_a_misspelt_asks_is_reported_twice_on_its_line():
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + "loop_prevention:\n  templates:\n    ask: {wants: [email]}\n")
    assert [(i.line, i.path) for i in err.value.issues] == [
        (5, "loop_prevention.templates.ask.wants"),
        (5, "loop_prevention.templates.ask.asks"),
    ]


def test_changes_to_the_new_settings_read_well():
    old = load_policy(HEAD)
    new = load_policy(
        HEAD
        + "escalation: {repeat_contacts: 3}\n"
        + "loop_prevention: {templates: {ask-order: {asks: [order_number, email]}}}\n"
        + "redact_pii: [card]\n"
        + "max_length: {channels: {sms: 160}}\n"
    )
    assert policy_changes(old, new) == [
        "escalation.repeat_contacts: 0 -> 3",
        "loop_prevention.templates.ask-order: (unset) -> [email, order_number]",
        "redact_pii: +card",
        "max_length.channels.sms: (unset) -> 160",
    ]
