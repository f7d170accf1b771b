"""A worker's policy follower under four-eyes governance, fed records directly (no Kafka):
an `active` record that skipped the approval is refused, logged and counted."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    pending_key,
    version_key,
)
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import load_policy
from pipeline.kafka.policy_follower import PolicyFollower
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from tests.factories import policy_record_value

AGENTS = "agents: [promo-bot]\n"
GOVERNED_YAML = "version: 2.0.0\n" + AGENTS + "governance: {require_approval: true}\n"
GOVERNED_V3_YAML = GOVERNED_YAML.replace("2.0.0", "3.0.0") + "kill_switch: {agents: [promo-bot]}\n"
PLAIN_YAML = "version: 4.0.0\n" + AGENTS
GOVERNED = load_policy(GOVERNED_YAML)


def rec(text: str, proposed_by: str | None = None, approved_by: str | None = None) -> bytes:
    return policy_record_value(text, proposed_by, approved_by)


def follower(in_force: Policy) -> tuple[PolicyFollower, list[Policy]]:
    seen: list[Policy] = []
    f = PolicyFollower(Settings(bootstrap="unused:1"), in_force, TowerMetrics(), seen.append)
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
    f = PolicyFollower(settings, DEFAULT_POLICY, TowerMetrics())
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML)) is False
    assert f.current() is DEFAULT_POLICY and unapproved(f) == 1.0
    assert f.apply(ACTIVE_KEY, rec(PLAIN_YAML, "ana", "ben")) is True
