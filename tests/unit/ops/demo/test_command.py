"""`tower demo` without a broker: its options, the showcase policy, and the showcase traffic
that makes each of its rules fire."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.contracts.codec import canonical_event_json
from pipeline.core.policy import Policy
from pipeline.core.policy_document import load_policy_file
from pipeline.core.whatif import final_decisions
from pipeline.ops.cli import main
from pipeline.ops.demo.command import SHOWCASE_POLICY
from pipeline.ops.demo.summary import (
    PREVENTED,
)
from pipeline.ops.simulator import AgentSimulator, ShowcaseSimulator, SimRecord


def test_showcase_policy_validates_and_turns_every_rule_on() -> None:
    result = CliRunner().invoke(main, ["policy", "validate", str(SHOWCASE_POLICY)])
    assert result.exit_code == 0, result.output

    p = load_policy_file(SHOWCASE_POLICY)
    default = Policy()
    assert p.kill_switch.armed
    assert any(p.opt_in_required.values())
    assert p.caps and p.merge_window_ms > 0 and p.max_facts > 0
    assert p.authority  # the consistency ledger accepts corrections from higher agents
    assert p.service_first.categories and p.service_first.complaint_cooldown_ms > 0
    assert p.quiet_hours.categories
    assert set(p.quiet_hours.categories.values()) == {"defer", "suppress"}
    assert p.offers.window_ms > 0
    assert any(ms > 0 for ms in p.holds.hold_ms.values())
    esc = p.escalation
    assert esc.repeat_contacts and esc.negative_streak and esc.explicit_request
    assert p.loop_prevention.templates
    assert p.disclosure.text and p.redact_pii
    assert p.banned_phrases.phrases and p.max_length.channels
    assert p.policy_version != default.policy_version


@pytest.fixture(scope="module")
def showcase_run() -> tuple[list[SimRecord], list[Any]]:
    """What the demo's traffic gets under the showcase policy, decided by the pure core."""
    records = ShowcaseSimulator(customers=300, seed=1).records(4500)
    events = [r.event for r in records if r.event is not None]
    return records, final_decisions(events, load_policy_file(SHOWCASE_POLICY))


def test_showcase_traffic_makes_every_rule_fire(
    showcase_run: tuple[list[SimRecord], list[Any]],
) -> None:
    _records, decisions = showcase_run
    outcomes = Counter(d.outcome for d in decisions)
    stopped = Counter(
        d.rule for d in decisions if d.outcome in ("suppressed", "merged", "withheld")
    )
    changed = Counter(
        s.rule for d in decisions if d.action for s in d.trace if s.verdict == "transform"
    )
    blocking = set(PREVENTED) - {"duplicate", "replay", "max_length"}  # truncated, not dropped
    quiet = {rule for rule in blocking if stopped[rule] < 5}
    assert not quiet, f"rules that hardly fire: {sorted(quiet)} in {stopped}"
    assert stopped["duplicate_merge"] > 100 and stopped["hold_window"] > 100
    assert outcomes["duplicate"] > 5 and outcomes["deferred"] > 5 and outcomes["escalated"] > 5
    assert {"disclosure", "pii_redaction", "max_length"} <= set(changed)


def test_the_base_simulator_still_produces_what_it_did() -> None:
    """Tests and benchmarks depend on AgentSimulator's seeded output: the showcase is a
    subclass and must not change it (digest taken before ShowcaseSimulator existed)."""
    h = hashlib.sha256()
    for r in AgentSimulator(customers=20, seed=5).records(400, malformed=5):
        body = canonical_event_json(r.event).encode() if r.event else r.value
        h.update(r.key + b"|" + body + b"|" + r.value[:1] + b"\n")
    assert h.hexdigest() == "0622d63513aad68ae07f8c5ba24198c96d46bad314b806f44f8798f9e3840942"


def test_demo_offers_policy_and_keep() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--policy", "--impact-customers", "--keep", "--keep-kafka"):
        assert option in result.output
