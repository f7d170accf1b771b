"""A worker's policy follower under four-eyes governance, fed records directly (no Kafka):
an `active` record that skipped the approval, or whose signatures do not verify against
two keys of the approvers file, is refused, logged and counted; a tombstoned `active`
record leaves the verified policy in force, and a restarted worker finds it again."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    pending_key,
    version_key,
)
from pipeline.contracts.policy_signatures import ApproverKeys, parse_approvers
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import load_policy
from pipeline.kafka import policy_follower as follower_module
from pipeline.kafka.policy_follower import PolicyFollower, PolicyRefused, start_policy_follower
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from tests.factories import policy_record_value
from tests.policy_signing import Keyring, signed_record_value

AGENTS = "agents: [promo-bot]\n"
GOVERNED_YAML = "version: 2.0.0\n" + AGENTS + "governance: {require_approval: true}\n"
GOVERNED_V3_YAML = GOVERNED_YAML.replace("2.0.0", "3.0.0") + "kill_switch: {agents: [promo-bot]}\n"
PLAIN_YAML = "version: 4.0.0\n" + AGENTS
GOVERNED = load_policy(GOVERNED_YAML)
KEYS = Keyring()
APPROVERS = parse_approvers(KEYS.approvers_text("ana", "ben"), "approvers")


def rec(text: str, proposed_by: str | None = None, approved_by: str | None = None) -> bytes:
    """Unsigned unless both are named; then each signs with their own key (a proper
    approval), so the name checks below are what refuses a record."""
    if proposed_by and approved_by:
        return signed_record_value(text, KEYS, proposed_by, approved_by)
    return policy_record_value(text, proposed_by, approved_by)


def follower(
    in_force: Policy, approvers: ApproverKeys = APPROVERS, **kwargs
) -> tuple[PolicyFollower, list[Policy]]:
    seen: list[Policy] = []
    f = PolicyFollower(
        Settings(bootstrap="unused:1"),
        in_force,
        TowerMetrics(),
        seen.append,
        approvers=approvers,
        **kwargs,
    )
    return f, seen


def unapproved(f: PolicyFollower) -> float | None:
    return f.metrics.registry.get_sample_value(
        "tower_policy_rejected_total", {"reason": "unapproved"}
    )


@pytest.mark.parametrize(
    ("in_force", "value", "why"),
    [
        # forged: written straight to `active`, no approval at all
        (DEFAULT_POLICY, rec(GOVERNED_YAML), "sets governance.require_approval"),
        (GOVERNED, rec(PLAIN_YAML), "has governance.require_approval"),
        (GOVERNED, rec(GOVERNED_V3_YAML, "mallory"), "has no approval"),
        # "approved" by the person who proposed it
        (GOVERNED, rec(GOVERNED_V3_YAML, "ana", "ana"), "approved by its own proposer"),
        (GOVERNED, rec(PLAIN_YAML, "ana", "ANA"), "approved by its own proposer"),
        (DEFAULT_POLICY, rec(GOVERNED_YAML, "ana", "ana"), "approved by its own proposer"),
    ],
)
def test_an_unapproved_active_record_is_refused_and_counted(in_force, value, why, caplog):
    f, seen = follower(in_force)
    with caplog.at_level(logging.ERROR, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, value) is False
    assert f.current() is in_force and seen == []
    assert unapproved(f) == 1.0
    assert f.metrics.registry.get_sample_value("tower_policy_swaps_total") == 0.0
    assert "ignoring published policy (unapproved)" in caplog.text and why in caplog.text


@pytest.mark.parametrize(
    ("in_force", "value", "version"),
    [
        (DEFAULT_POLICY, rec(GOVERNED_YAML, "ana", "ben"), GOVERNED.policy_version),
        (
            GOVERNED,
            rec(GOVERNED_V3_YAML, "ana", "ben"),
            load_policy(GOVERNED_V3_YAML).policy_version,
        ),
        # switching governance off, with four eyes
        (GOVERNED, rec(PLAIN_YAML, "ben", "ana"), load_policy(PLAIN_YAML).policy_version),
        # no governance on either side: a plain publish, as before
        (DEFAULT_POLICY, rec(PLAIN_YAML), load_policy(PLAIN_YAML).policy_version),
    ],
)
def test_an_approved_or_ungoverned_record_comes_into_force(in_force, value, version):
    f, seen = follower(in_force)
    assert f.apply(ACTIVE_KEY, value) is True
    assert f.current().policy_version == version == seen[0].policy_version
    assert unapproved(f) is None


def test_pending_and_version_records_are_never_applied_nor_counted():
    f, seen = follower(DEFAULT_POLICY)
    for key in (pending_key(GOVERNED.policy_version), version_key(GOVERNED.policy_version)):
        assert f.apply(key, rec(GOVERNED_YAML, "ana")) is False
        assert f.apply(key, None) is False  # the tombstone of an approved or rejected proposal
    assert f.current() is DEFAULT_POLICY and seen == []
    assert unapproved(f) is None


def test_once_governed_a_worker_refuses_a_plain_publish_that_follows():
    """The history a worker replays at start: governance switched on with approval, then a
    one-person publish written around the CLI, then a proper approval."""
    f, _ = follower(DEFAULT_POLICY)
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML, "ana", "ben")) is True
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML)) is False
    assert f.current().policy_version == GOVERNED.policy_version
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML, "ana", "ben")) is True
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML)) is False  # ungoverned now, but new says yes
    assert unapproved(f) == 2.0


def test_an_unapproved_record_of_the_version_in_force_is_still_counted():
    f, _ = follower(GOVERNED)
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML)) is False
    assert f.current() is GOVERNED and unapproved(f) == 1.0


def test_the_in_force_policy_is_the_one_asked():
    """A record good enough for an ungoverned worker is refused by a governed one."""
    value = rec(PLAIN_YAML)
    assert follower(DEFAULT_POLICY)[0].apply(ACTIVE_KEY, value) is True
    assert follower(replace(GOVERNED))[0].apply(ACTIVE_KEY, value) is False


def test_a_deployment_that_requires_approval_refuses_a_forged_record_on_a_fresh_start() -> None:
    """Compaction leaves a fresh worker only the latest `active` record: a forged one that
    drops governance meets no policy requiring approval, unless the deployment does."""
    settings = Settings(bootstrap="unused:1", policy_require_approval=True)
    f = PolicyFollower(settings, DEFAULT_POLICY, TowerMetrics(), approvers=APPROVERS)
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML)) is False
    assert f.current() is DEFAULT_POLICY and unapproved(f) == 1.0
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML, "ana", "ben")) is True


def missing(f: PolicyFollower) -> float | None:
    return f.metrics.registry.get_sample_value("tower_policy_active_missing")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        # one operator, two names: ben's approval signed with ana's key
        (
            signed_record_value(GOVERNED_V3_YAML, KEYS, "ana", "ben", approver_key="ana"),
            "approval signature of 'ben' does not verify",
        ),
        # a forged approval: signed by a key the approvers file does not list
        (
            signed_record_value(GOVERNED_V3_YAML, KEYS, "ana", "ben", approver_key="mallory"),
            "approval signature of 'ben' does not verify",
        ),
        (
            signed_record_value(GOVERNED_V3_YAML, KEYS, "ana", "carol"),
            "'carol' is not in the approvers file",
        ),
    ],
)
def test_a_record_without_two_verified_signatures_is_refused_with_the_reason(value, why, caplog):
    f, seen = follower(GOVERNED)
    with caplog.at_level(logging.ERROR, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, value) is False
    assert f.current() is GOVERNED and seen == [] and unapproved(f) == 1.0
    assert why in caplog.text


def test_one_person_with_two_names_cannot_pass():
    """ana listed twice, as ana and ana2, with one key: both signatures verify, and still
    it is one key."""
    one_key = ApproverKeys(
        {
            name: (parse_approvers(KEYS.line("ana"), "a").keys_of("ana")[0],)
            for name in ("ana", "ana2")
        }
    )
    value = signed_record_value(GOVERNED_V3_YAML, KEYS, "ana", "ana2", approver_key="ana")
    f, _ = follower(GOVERNED, one_key)
    assert f.apply(ACTIVE_KEY, value) is False
    assert f.current() is GOVERNED and unapproved(f) == 1.0


def test_without_approver_keys_no_governed_record_comes_into_force(caplog):
    f, _ = follower(GOVERNED, ApproverKeys())
    with caplog.at_level(logging.ERROR, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, rec(GOVERNED_V3_YAML, "ana", "ben")) is False
    assert "set TOWER_POLICY_APPROVERS_FILE" in caplog.text


def test_an_applied_change_names_the_verified_signers(caplog):
    f, _ = follower(GOVERNED)
    with caplog.at_level(logging.WARNING, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, rec(GOVERNED_V3_YAML, "ana", "ben")) is True
    assert f.approval is not None
    assert (f.approval.proposer.name, f.approval.approver.name) == ("ana", "ben")
    assert f.approval.describe() in caplog.text


def test_a_tombstoned_active_record_keeps_the_verified_policy_and_raises_the_gauge(caplog):
    f, seen = follower(DEFAULT_POLICY)
    assert missing(f) == 0.0
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML, "ana", "ben")) is True
    assert missing(f) == 0.0
    with caplog.at_level(logging.WARNING, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, None) is False
    assert f.current().policy_version == GOVERNED.policy_version and len(seen) == 1
    assert missing(f) == 1.0 and f.active_missing
    assert "keeping the last verified policy " + GOVERNED.policy_version in caplog.text
    assert unapproved(f) is None  # a tombstone is not a rejected policy
    # a new approved `active` record ends it
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_V3_YAML, "ben", "ana")) is True
    assert missing(f) == 0.0


def test_a_tombstone_on_a_topic_that_never_had_a_policy_raises_nothing():
    f, _ = follower(DEFAULT_POLICY)
    assert f.apply(ACTIVE_KEY, None) is False
    assert missing(f) == 0.0 and f.current() is DEFAULT_POLICY


def test_a_restarted_worker_starts_from_the_kept_record(tmp_path, caplog):
    keep = tmp_path / "policy" / "active.json"
    first, _ = follower(DEFAULT_POLICY, keep=keep)
    first._mark_caught_up()
    assert first.apply(ACTIVE_KEY, rec(GOVERNED_YAML, "ana", "ben")) is True
    assert keep.is_file()

    again, _ = follower(DEFAULT_POLICY, keep=keep)
    assert again.restore_kept() is True
    assert again.current().policy_version == GOVERNED.policy_version
    assert again.approval is not None and again.approval.approver.name == "ben"
    assert again.active_missing  # until the topic shows its `active` record

    # the kept record passes the same check as the topic's: tampered, it is ignored
    keep.write_bytes(keep.read_bytes().replace(b"promo-bot", b"promo-bot, care-bot"))
    tampered, _ = follower(DEFAULT_POLICY, keep=keep)
    with caplog.at_level(logging.ERROR, "pipeline.kafka.policy_follower"):
        assert tampered.restore_kept() is False
    assert tampered.current() is DEFAULT_POLICY and "ignoring the kept policy" in caplog.text
    # and verified against today's approvers: a removed key no longer counts
    keep.write_bytes(rec(GOVERNED_YAML, "ana", "ben"))
    removed, _ = follower(
        DEFAULT_POLICY, parse_approvers(KEYS.approvers_text("ana"), "a"), keep=keep
    )
    assert removed.restore_kept() is False


class EmptyTopic:
    """A consumer of a `policies` topic with nothing on it."""

    def assign(self, tps) -> None:
        pass

    def get_watermark_offsets(self, tp, timeout, cached):
        return (0, 0)

    def poll(self, timeout):
        import time

        time.sleep(timeout)

    def close(self) -> None:
        pass


@pytest.fixture
def empty_topic(monkeypatch):
    monkeypatch.setattr(follower_module.clients, "reader", lambda s, name, **conf: EmptyTopic())


def test_a_deployment_that_requires_approval_refuses_to_run_on_the_default(empty_topic, tmp_path):
    approvers = KEYS.approvers_file(tmp_path / "approvers", "ana", "ben")
    base = Settings(bootstrap="unused:1", data_dir=tmp_path / "w", policy_require_approval=True)
    with pytest.raises(PolicyRefused) as err:
        start_policy_follower(replace(base, policy_approvers_file=approvers), TowerMetrics())
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("TOWER_POLICY_REQUIRE_APPROVAL is set but no approved policy")
    assert f"the built-in default, {DEFAULT_POLICY.policy_version}" in message
    assert "tower policy propose FILE --key KEY" in message

    with pytest.raises(PolicyRefused, match="TOWER_POLICY_APPROVERS_FILE is not"):
        start_policy_follower(base, TowerMetrics())


def test_a_restarted_worker_runs_on_its_kept_verified_policy(empty_topic, tmp_path):
    """The topic lost its `active` record (deleted, or tombstoned and compacted away)."""
    approvers = KEYS.approvers_file(tmp_path / "approvers", "ana", "ben")
    settings = Settings(
        bootstrap="unused:1",
        data_dir=tmp_path / "w",
        policy_require_approval=True,
        policy_approvers_file=approvers,
    )
    keep = follower_module.kept_record_path(settings)
    keep.parent.mkdir(parents=True)
    keep.write_bytes(rec(GOVERNED_YAML, "ana", "ben"))
    metrics = TowerMetrics()
    f = start_policy_follower(settings, metrics)
    try:
        assert f.current().policy_version == GOVERNED.policy_version
        assert metrics.registry.get_sample_value("tower_policy_active_missing") == 1.0
        assert (
            metrics.registry.get_sample_value(
                "tower_policy_info", {"policy_version": GOVERNED.policy_version}
            )
            == 1.0
        )
    finally:
        f.stop()


def test_a_running_worker_audits_the_changes_it_puts_in_force():
    """Once caught up: the history replayed at start was audited when it happened."""
    calls: list[tuple] = []
    f, _ = follower(DEFAULT_POLICY, on_applied=lambda *args: calls.append(args))
    assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML, "ana", "ben"), 3) is True
    assert calls == []  # replaying the topic at start
    f._mark_caught_up()
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML, "ben", "ana"), 5) is True
    [(record, approval, old, offset)] = calls
    assert (record.policy_version, old, offset) == (
        load_policy(PLAIN_YAML).policy_version,
        GOVERNED.policy_version,
        5,
    )
    assert (approval.proposer.name, approval.approver.name) == ("ben", "ana")
    plain_again = PLAIN_YAML.replace("4.0.0", "4.1.0")
    assert f.apply(ACTIVE_KEY, rec(plain_again), 6) is True  # a plain publish: no signers
    [_, (record, approval, _, offset)] = calls
    assert (record.policy_version, approval, offset) == (
        load_policy(plain_again).policy_version,
        None,
        6,
    )


def test_a_failing_audit_write_does_not_stop_the_follower(caplog):
    def fail(*args):
        raise RuntimeError("broker gone")

    f, _ = follower(DEFAULT_POLICY, on_applied=fail)
    f._mark_caught_up()
    with caplog.at_level(logging.ERROR, "pipeline.kafka.policy_follower"):
        assert f.apply(ACTIVE_KEY, rec(GOVERNED_YAML, "ana", "ben")) is True
    assert f.current().policy_version == GOVERNED.policy_version
    assert "policy_applied audit record of" in caplog.text


def test_an_unreadable_or_bad_approvers_file_names_the_setting(tmp_path):
    from pipeline.contracts.policy_signatures import ApproversFileError

    with pytest.raises(ApproversFileError, match=r"TOWER_POLICY_APPROVERS_FILE .*No such file"):
        follower_module.load_approvers(tmp_path / "missing")
    bad = tmp_path / "approvers"
    bad.write_text("ana not-a-key\n")
    with pytest.raises(ApproversFileError, match=r"approvers:1: ana: not a base64 Ed25519"):
        follower_module.load_approvers(bad)
    assert follower_module.load_approvers(None) == ApproverKeys()
