"""Loop prevention: never ask the customer for what the tower already knows (suppress, or
approve annotated); the policy section read strictly."""

from __future__ import annotations

import pytest

from pipeline.core.decision import APPROVED, SUPPRESSED
from pipeline.core.policy import (
    LoopPrevention,
    Policy,
)
from pipeline.core.policy_document import PolicyError, load_policy
from tests.factories import T0, decide_all, signal
from tests.unit.core.policy_mistakes import HEAD, assert_one_mistake
from tests.unit.core.rules.service_messages import TEMPLATES, msg

LOOP = Policy(caps=(), loop_prevention=LoopPrevention(TEMPLATES))
REWRITE = Policy(caps=(), loop_prevention=LoopPrevention(TEMPLATES, action="rewrite"))


def run(events, policy):
    return decide_all(events, policy)


def rules_in(d):
    return [s.rule for s in d.trace]


PURCHASE = signal("purchase", at=T0, order_id="A-1001", amount="20")
PROFILE = signal("profile_updated", at=T0, email="jo@example.com", timezone="UTC")


@pytest.mark.parametrize(
    ("signals", "content", "outcome", "reason"),
    [
        ([PURCHASE], "ask-order: which order is it?", SUPPRESSED, "asks for order_number, alre"),
        ([], "ask-order: which order is it?", APPROVED, None),
        ([PROFILE], "ask-order: which order is it?", APPROVED, None),  # email known, not asked
        ([PROFILE], "ask-contact: how can we reach you?", SUPPRESSED, "asks for email, already"),
        # the longest template id wins: this one asks for the e-mail as well
        ([PROFILE], "ask-order-and-mail: please", SUPPRESSED, "ask-order-and-mail asks for email"),
        ([PURCHASE, PROFILE], "ask-order-and-mail", SUPPRESSED, "email, order_number, already"),
        ([PURCHASE], "hello, ask-order later", APPROVED, None),  # prefix only
        ([PURCHASE], None, APPROVED, None),
    ],
)
def test_loop_prevention(signals, content, outcome, reason):
    decisions, _ = run([*signals, msg(content)], LOOP)
    d = decisions[-1]
    assert d.outcome == outcome
    if reason is not None:
        assert d.rule == "loop_prevention"
        assert reason in d.reason
    template = content is not None and content.startswith("ask-")
    assert ("loop_prevention" in rules_in(d)) is template  # silent without a template


def test_only_asked_facts_are_remembered_and_only_when_the_rule_is_on():
    _, state = run([PURCHASE, PROFILE], LOOP)
    assert state.known == {"order_number": "A-1001", "email": "jo@example.com"}
    _, state = run([PURCHASE, PROFILE], Policy(caps=()))
    assert state.known == {}


def test_rewrite_approves_with_the_known_facts_appended():
    decisions, _ = run([PURCHASE, msg("ask-order: which order is it?")], REWRITE)
    d = decisions[-1]
    assert d.outcome == APPROVED
    assert d.action.content == "ask-order: which order is it? [known: order_number=A-1001]"
    assert rules_in(d)[-1] == "known_facts"
    assert d.trace[-1].verdict == "transform"
    decisions, _ = run([msg("ask-order: which order is it?")], REWRITE)  # nothing known
    assert decisions[-1].action.content == "ask-order: which order is it?"
    assert "known_facts" not in rules_in(decisions[-1])


def test_a_misspelt_asks_is_reported_twice_on_its_line():
    with pytest.raises(PolicyError) as err:
        load_policy(HEAD + "loop_prevention:\n  templates:\n    ask: {wants: [email]}\n")
    assert [(i.line, i.path) for i in err.value.issues] == [
        (5, "loop_prevention.templates.ask.wants"),
        (5, "loop_prevention.templates.ask.asks"),
    ]


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
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
    ],
)
def test_each_mistake_is_reported_with_line_and_hint(body, line, path, hint):
    assert_one_mistake(body, line, path, hint)
