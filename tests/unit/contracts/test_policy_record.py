"""The policies topic's wire format, the change summary, and how a worker treats records."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    InvalidPolicyRecord,
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
    version_key,
)
from pipeline.core.policy import DAY_MS, DEFAULT_POLICY, FrequencyCap, KillSwitch, Policy
from pipeline.core.policy_changes import policy_changes, summary
from pipeline.core.policy_document import load_policy
from pipeline.kafka.policy_follower import PolicyFollower
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings

V2_YAML = "version: 2.0.0\nagents: [promo-bot]\nkill_switch: {agents: [promo-bot]}\n"
V2 = load_policy(V2_YAML)


def record_for(text: str, policy_version: str | None = None) -> PolicyRecord:
    policy = load_policy(text)
    return PolicyRecord(
        version=policy.version,
        policy_version=policy_version or policy.policy_version,
        content_hash=policy.content_hash,
        document=text,
        published_at=1_767_225_600_000,
        published_by="alice",
    )


def test_record_round_trips_and_keys_name_versions():
    rec = record_for(V2_YAML)
    assert decode_policy_record(encode_policy_record(rec)) == rec
    assert set(orjson.loads(encode_policy_record(rec))) == {
        "version",
        "policy_version",
        "content_hash",
        "document",
        "published_at",
        "published_by",
    }
    assert ACTIVE_KEY == b"active"
    assert version_key(V2.policy_version) == f"version/{V2.policy_version}".encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "empty value"),
        (b"", "empty value"),
        (b"{oops", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"version": "1.0.0"}', "policy_version must be str"),
        (
            encode_policy_record(record_for(V2_YAML)).replace(b'"published_at":', b'"x":'),
            "published_at must be int",
        ),
    ],
)
def test_bad_records_say_what_is_wrong(value, expected):
    with pytest.raises(InvalidPolicyRecord, match=expected):
        decode_policy_record(value)


@pytest.mark.parametrize(
    ("new", "lines"),
    [
        (DEFAULT_POLICY, []),
        (replace(DEFAULT_POLICY, notes="other words"), ["notes changed"]),
        (
            replace(DEFAULT_POLICY, caps=(replace(DEFAULT_POLICY.caps[0], limit=1),)),
            ["caps.per-channel-daily.limit: 3 -> 1"],
        ),
        (
            replace(DEFAULT_POLICY, kill_switch=KillSwitch(agents=frozenset({"promo-bot"}))),
            ["kill_switch.agents: +promo-bot"],
        ),
        (
            replace(
                DEFAULT_POLICY,
                caps=(FrequencyCap("weekly", 5, 7 * DAY_MS, "all"),),
                opt_in_required={**DEFAULT_POLICY.opt_in_required, "sales": False},
            ),
            [
                "opt_in_required.sales: True -> False",
                "caps.per-channel-daily: removed",
                f"caps.weekly: added (limit 5 per {7 * DAY_MS} ms, all)",
            ],
        ),
    ],
)
def test_policy_changes_name_each_changed_setting(new, lines):
    assert policy_changes(DEFAULT_POLICY, new) == lines


def test_summary_names_both_versions():
    text = summary(DEFAULT_POLICY, V2)
    assert text.startswith(f"policy {DEFAULT_POLICY.policy_version} -> {V2.policy_version}: ")
    assert "kill_switch.agents: +promo-bot" in text


def _follower() -> tuple[PolicyFollower, list[Policy]]:
    seen: list[Policy] = []
    f = PolicyFollower(Settings(bootstrap="unused:1"), DEFAULT_POLICY, TowerMetrics(), seen.append)
    return f, seen


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (ACTIVE_KEY, b"not json", "bad_record"),
        (
            ACTIVE_KEY,
            encode_policy_record(replace(record_for(V2_YAML), document="version: x\n")),
            "invalid_policy",
        ),
        (
            ACTIVE_KEY,
            encode_policy_record(record_for(V2_YAML, "2.0.0+000000000000")),
            "hash_mismatch",
        ),
        (version_key(V2.policy_version), encode_policy_record(record_for(V2_YAML)), None),
    ],
)
def test_follower_keeps_its_policy_when_a_record_is_unusable(key, value, reason):
    follower, seen = _follower()
    assert follower.apply(key, value) is False
    assert follower.current() is DEFAULT_POLICY and seen == []
    rejected = follower.metrics.registry.get_sample_value(
        "tower_policy_rejected_total", {"reason": reason or "bad_record"}
    )
    assert rejected == (1.0 if reason else None)


def test_follower_swaps_to_a_valid_active_record_once():
    follower, seen = _follower()
    value = encode_policy_record(record_for(V2_YAML))
    assert follower.apply(ACTIVE_KEY, value) is True
    assert follower.apply(ACTIVE_KEY, value) is False  # same version again: no swap
    assert follower.current().policy_version == V2.policy_version
    assert [p.policy_version for p in seen] == [V2.policy_version]
    assert follower.metrics.registry.get_sample_value("tower_policy_swaps_total") == 1.0
