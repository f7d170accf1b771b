"""Policy documents: the default YAML is DEFAULT_POLICY, and every mistake is found with its
line and a hint at what is valid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.policy import (
    DEFAULT_POLICY,
    BannedPhrases,
    Disclosure,
    Escalation,
    KillSwitch,
    LoopPrevention,
    MaxLength,
    OfferArbitration,
    QuietHours,
)
from pipeline.core.policy_changes import policy_changes
from pipeline.core.policy_document import PolicyError, PolicyIssue, load_policy, load_policy_file
from tests.unit.core.policy_mistakes import HEAD, assert_one_mistake

DEFAULT_YAML = Path(__file__).resolve().parents[3] / "deploy" / "policy.default.yaml"


def test_default_yaml_is_the_default_policy():
    loaded = load_policy_file(DEFAULT_YAML)
    assert replace(loaded, notes="") == DEFAULT_POLICY
    assert loaded.policy_version == DEFAULT_POLICY.policy_version
    assert loaded.notes


def test_minimal_document_is_all_defaults():
    assert load_policy("version: 1.0.0\n") == DEFAULT_POLICY


def test_settings_are_read_into_the_policy():
    policy = load_policy(
        HEAD
        + "authority: [care-bot, promo-bot]\n"
        + "kill_switch: {agents: [promo-bot], actions: [offer], channels: [sms]}\n"
        + "quiet_hours: {start: 22:30, end: '07:00', timezone: Europe/Berlin,"
        + " categories: {marketing: defer, sales: suppress}}\n"
        + "offers: {window_ms: 86400000, value_weight: 0}\n"
        + "opt_in_required: {sales: false}\n"
    )
    assert policy.authority == ("care-bot", "promo-bot")
    assert policy.kill_switch == KillSwitch(
        agents=frozenset({"promo-bot"}),
        actions=frozenset({"offer"}),
        channels=frozenset({"sms"}),
    )
    assert policy.quiet_hours == QuietHours(
        "22:30", "07:00", "Europe/Berlin", {"marketing": "defer", "sales": "suppress"}
    )
    assert policy.offers == OfferArbitration(window_ms=86_400_000, value_weight=0.0)
    assert policy.opt_in_required["sales"] is False
    assert policy.opt_in_required["marketing"] is True  # unnamed categories keep defaults


@pytest.mark.parametrize(
    ("body", "line", "path", "hint"),
    [
        ("colour: blue\n", 3, "colour", "valid keys: agents, audit, authority"),
        ("merge_window_ms: 0\n", 3, "merge_window_ms", "milliseconds > 0"),
        ("merge_window_ms: -10\n", 3, "merge_window_ms", "milliseconds > 0"),
        ("merge_window_ms: ten\n", 3, "merge_window_ms", "must be an integer"),
        ("merge_window_ms: true\n", 3, "merge_window_ms", "must be an integer"),
        ("replay_memory: 0\n", 3, "replay_memory", ">= 1"),
        ("caps:\n  - name: a\n    limit: -1\n    window_ms: 1\n", 5, "caps[0].limit", ">= 0"),
        ("caps:\n  - name: a\n    limit: 1\n    window_ms: 0\n", 6, "caps[0].window_ms", "> 0"),
        (
            "caps:\n  - {name: a, limit: 1, window_ms: 5, scope: planet}\n",
            4,
            "caps[0].scope",
            "valid: all, category, channel, department",
        ),
        ("caps:\n  - {name: a, limit: 1}\n", 4, "caps[0].window_ms", "required key is missing"),
        (
            "caps:\n  - {name: a, limit: 1, window_ms: 5}\n  - {name: a, limit: 2, window_ms: 5}\n",
            5,
            "caps[1].name",
            "used twice",
        ),
        ("caps: {name: a}\n", 3, "caps", "must be a list of caps"),
        ("kill_switch:\n  channels: [email, fax]\n", 4, "kill_switch.channels[1]", "valid: chat"),
        ("kill_switch:\n  actions: [dance]\n", 4, "kill_switch.actions[0]", "valid: answer"),
        ("kill_switch:\n  agents: [ghost-bot]\n", 4, "kill_switch.agents[0]", "not declared"),
        ("kill_switch:\n  agent: [care-bot]\n", 4, "kill_switch.agent", "valid keys: actions"),
        ("authority:\n  - care-bot\n  - ghost-bot\n", 5, "authority[1]", "care-bot, promo-bot"),
        ("opt_in_required: {spam: true}\n", 3, "opt_in_required.spam", "valid keys: marketing"),
        ("opt_in_required: {sales: maybe}\n", 3, "opt_in_required.sales", "true or false"),
        ("service_first:\n  categories: [gossip]\n", 4, "service_first.categories[0]", "sales"),
        ("service_first:\n  case_max_age_ms: 0\n", 4, "service_first.case_max_age_ms", "> 0"),
        ("quiet_hours:\n  start: '25:00'\n", 4, "quiet_hours.start", "HH:MM"),
        ("quiet_hours:\n  timezone: Mars/Olympus\n", 4, "quiet_hours.timezone", "IANA"),
        (
            "quiet_hours:\n  categories: {sales: later}\n",
            4,
            "quiet_hours.categories.sales",
            "defer",
        ),
        ("quiet_hours: {start: '08:00', end: '08:00'}\n", 3, "quiet_hours", "need a span"),
        ("offers:\n  window_ms: -1\n", 4, "offers.window_ms", "0 switches it off"),
        ("offers:\n  value_weight: -2\n", 4, "offers.value_weight", ">= 0"),
        ("notes: [a]\n", 3, "notes", "non-empty string"),
        ("merge_window_ms: 1\nmerge_window_ms: 2\n", 4, "merge_window_ms", "duplicate key"),
    ],
)
def test_each_mistake_is_reported_with_line_and_hint(body, line, path, hint):
    assert_one_mistake(body, line, path, hint)


@pytest.mark.parametrize(
    ("text", "line", "path", "hint"),
    [
        ("version: 1.0\n", 1, "version", "MAJOR.MINOR.PATCH"),
        ("version: v1.0.0\n", 1, "version", "semantic version"),
        ("notes: hi\n", 1, "version", "required key is missing"),
        ("", 1, "", "empty document"),
        ("- version\n", 1, "", "must be a mapping"),
        ("version: 1.0.0\ncaps: [\n", 2, "", "not valid YAML"),
    ],
)
def test_document_level_mistakes(text, line, path, hint):
    with pytest.raises(PolicyError) as err:
        load_policy(text)
    assert err.value.issues[0] == PolicyIssue(line, path, err.value.issues[0].message)
    assert hint in err.value.issues[0].message


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        (
            "version: 1.0.0\ncaps:\n  a: [1, 2\n  b: 3\n",
            3,
            "'[' opened on this line is never closed",
        ),
        ("version: 1.0.0\ncaps: {a: 1\nx: 2\n", 2, "'{' opened on this line is never closed"),
        ('version: 1.0.0\nnotes: "abc\ncaps: 1\n', 2, "quote opened on this line is never closed"),
        ("version: 1.0.0\ncaps: [\n\n\n", 2, "the document ends"),
        ("version: 1.0.0\ncaps:\n  a: 1\n b: 2\n", 4, "expected <block end>"),
        ("version: 1.0.0\ncaps: a: b\nx: 1\n", 2, "mapping values are not allowed here"),
        ("version: 1.0.0\ncaps:\n\ta: 1\n", 3, "'\\t' that cannot start any token"),
    ],
    ids=["unclosed-list", "unclosed-map", "unclosed-quote", "ends-early", "indent", "colon", "tab"],
)
def test_a_yaml_syntax_error_names_the_file_and_the_line_to_fix(tmp_path, text, line, hint):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy_file(path)
    assert [i.line for i in err.value.issues] == [line]
    assert str(err.value).startswith(f"{path}:{line}: not valid YAML: "), str(err.value)
    assert hint in str(err.value)


def test_all_issues_are_collected_in_line_order():
    text = (
        "version: one\n"
        "agents: [a]\n"
        "authority: [b]\n"
        "kill_switch: {channels: [fax], departments: [sales]}\n"
        "caps:\n"
        "  - {name: x, limit: -1, window_ms: 0}\n"
        "extra: 1\n"
    )
    with pytest.raises(PolicyError) as err:
        load_policy(text, "bad.yaml")
    assert [(i.line, i.path) for i in err.value.issues] == [
        (1, "version"),
        (3, "authority[0]"),
        (4, "kill_switch.channels[0]"),
        (6, "caps[0].limit"),
        (6, "caps[0].window_ms"),
        (7, "extra"),
    ]
    assert str(err.value).count("\n") == 5
    assert str(err.value).splitlines()[0].startswith("bad.yaml:1: version: ")


def test_yaml_one_one_surprises_do_not_change_meaning():
    # Unquoted 21:00 is the integer 1260 in YAML 1.1; names like `no` are booleans.
    policy = load_policy(
        "version: 1.0.0\nagents: ['no']\nauthority: [no]\nquiet_hours: {start: 21:00}\n"
    )
    assert policy.quiet_hours.start == "21:00"
    assert policy.authority == ("no",)


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
