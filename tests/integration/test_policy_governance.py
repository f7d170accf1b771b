"""Four-eyes policy changes on the real broker, with a running worker.

The CLI is driven as an operator would (`tower policy propose / approve / reject /
pending`, each with their own key); the forged records are produced straight to the
`policies` topic, as someone going around the CLI would, and the worker must refuse them:
unsigned, self-approved, one person signing under two names, a forged approval signature.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.contracts.policy_record import ACTIVE_KEY
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_document import load_policy
from pipeline.ops.cli import main
from pipeline.ops.policy.errors import PolicyCommandError
from pipeline.ops.policy.policy_topic import read_active, read_policies
from pipeline.ops.simulator import AgentSimulator
from pipeline.settings import Settings
from tests.conftest import WorkerProcess
from tests.factories import policy_record_value
from tests.kafka_io import consume_until, produce
from tests.policy_signing import Keyring, signed_record_value

pytestmark = pytest.mark.integration

AGENTS = "agents: [winback-bot, upsell-bot, promo-bot, care-bot, notify-bot]\n"
GOVERNED = "version: 2.0.0\n" + AGENTS + "governance:\n  require_approval: true\n"
PLAIN = "version: 3.0.0\n" + AGENTS + "kill_switch:\n  agents: [promo-bot]\n"


KEYS = Keyring()


@pytest.fixture
def approvers(tmp_path: Any) -> dict[str, str]:
    """ana and ben are the approvers (each with a key file); mallory has a key nobody lists."""
    files = {"approvers": str(KEYS.approvers_file(tmp_path / "approvers", "ana", "ben"))}
    for name in ("ana", "ben", "mallory"):
        files[name] = str(KEYS.private_key_file(tmp_path / f"{name}.key", name))
    return files


def cli(s: Settings, approvers: dict[str, str], *args: str) -> Any:
    env = replace(s, policy_approvers_file=Path(approvers["approvers"])).to_env()
    return CliRunner().invoke(main, ["policy", *args, "--bootstrap", s.bootstrap], env=env)


def as_(approvers: dict[str, str], name: str, key_of: str | None = None) -> tuple[str, ...]:
    return ("--by", name, "--key", approvers[key_of or name])


def healthz(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return json.loads(resp.read())["policy_version"]
    except OSError:
        return None


def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def policies_readable(s: Settings) -> bool:
    """A topic created a moment ago may not have a partition leader yet."""
    try:
        read_policies(s)
    except PolicyCommandError:
        return False
    return True


def forged(text: str, proposed_by: str | None = None, approved_by: str | None = None) -> bytes:
    return policy_record_value(
        text, proposed_by, approved_by, at=int(time.time() * 1000), by="mallory"
    )


def policy_audits(s: Settings, count: int) -> list[dict[str, Any]]:
    seen = consume_until(
        s.bootstrap,
        {"audit": s.topics.audit},
        lambda seen: sum(a.value["kind"] == "policy" for a in seen["audit"]) >= count,
        timeout=60,
    )
    return [a.value for a in seen["audit"] if a.value["kind"] == "policy"]


def test_an_approved_change_takes_over_and_forgeries_are_refused(tower_settings, worker, approvers):
    s, a = tower_settings, approvers
    worker.extra_env["TOWER_POLICY_APPROVERS_FILE"] = a["approvers"]
    v2 = load_policy(GOVERNED).policy_version
    worker.start()
    worker.metrics_text()  # web server up
    wait_until(lambda: healthz(worker.web_port) == DEFAULT_POLICY.policy_version, "worker up")

    wait_until(lambda: policies_readable(s), "the policies topic has a leader")
    file = worker.log_dir / "governed.yaml"
    file.write_text(GOVERNED)
    published = cli(s, a, "publish", str(file), "--by", "ana")
    assert published.exit_code == 1 and "tower policy propose" in published.output

    proposed = cli(s, a, "propose", str(file), *as_(a, "ana"))
    assert proposed.exit_code == 0, proposed.output
    assert f"{v2}  proposed by ana at " in cli(s, a, "pending").output

    own = cli(s, a, "approve", v2, *as_(a, "ana"))
    assert own.exit_code == 1 and "cannot also approve it (four eyes)" in own.output
    time.sleep(1.0)  # a proposal, even "self-approved", never reaches the worker
    assert healthz(worker.web_port) == DEFAULT_POLICY.policy_version

    started = time.monotonic()
    approved = cli(s, a, "approve", v2, *as_(a, "ben"))
    assert approved.exit_code == 0, approved.output
    wait_until(lambda: healthz(worker.web_port) == v2, f"worker switched to {v2}")
    print(f"\nswap latency approve -> /healthz: {time.monotonic() - started:.3f}s")
    assert cli(s, a, "pending").output.strip() == "no policy change pending"
    shown = cli(s, a, "show").output
    assert v2 in shown and "by ana" in shown and "by ben" in shown

    # forged `active` records, produced around the CLI: no approval, then a self-approval
    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, forged(PLAIN))])
    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, forged(PLAIN, "mallory", "Mallory"))])
    refused = 'tower_policy_rejected_total{reason="unapproved"} 2.0'
    wait_until(lambda: refused in worker.metrics_text(), refused)
    assert healthz(worker.web_port) == v2
    metrics = worker.metrics_text()
    assert f'tower_policy_info{{policy_version="{v2}"}} 1.0' in metrics
    assert "tower_policy_swaps_total 1.0" in metrics
    # the CLI reads the topic as the worker does, with the same approvers file
    active = read_active(replace(s, policy_approvers_file=Path(a["approvers"])))
    assert active is not None and active.policy.policy_version == v2

    # and decisions made after the forgery are still made under the approved policy
    records = AgentSimulator(customers=20, seed=5, replay_share=0.0).records(60)
    produce(s.bootstrap, s.topics.events, [(r.key, r.value) for r in records])
    seen = consume_until(
        s.bootstrap,
        {"audit": s.topics.audit},
        lambda seen: sum(a.value["kind"] != "policy" for a in seen["audit"]) >= len(records),
        decided=s,
    )
    decided = [a.value for a in seen["audit"] if a.value["kind"] != "policy"]
    assert {a["policy_version"] for a in decided} == {v2}
    assert not any(a["rule"] == "kill_switch" for a in decided)  # PLAIN never came into force

    # the CLI's two records, and the worker's own: the operators' and the worker's word
    by_outcome = {a.value["outcome"]: a.value for a in seen["audit"] if a.value["kind"] == "policy"}
    assert sorted(by_outcome) == ["policy_applied", "policy_changed", "policy_proposed"]
    proposal, change = by_outcome["policy_proposed"], by_outcome["policy_changed"]
    assert (proposal["outcome"], proposal["agent"]) == ("policy_proposed", "ana")
    assert (change["outcome"], change["agent"], change["policy_version"]) == (
        "policy_changed",
        "ben",
        v2,
    )
    assert change["reason"].endswith("[proposed by ana, approved by ben]")
    assert [t["reason"] for t in change["trace"][:2]] == ["proposed by ana", "approved by ben"]
    assert change["trace"][2]["verdict"] == "verified"
    assert change["trace"][2]["reason"].startswith("proposed by ana (ed25519:")
    applied = by_outcome["policy_applied"]
    assert applied["agent"] == f"{s.app_id}@http://127.0.0.1:{worker.web_port}"
    assert applied["policy_version"] == v2
    assert applied["reason"].endswith(change["trace"][2]["reason"])  # the same two keys
    assert applied["input"] == change["input"]  # the signed record, verifiable offline


def test_a_rejected_change_is_audited_with_both_names(tower_settings, tmp_path, approvers):
    s, a = tower_settings, approvers
    v2 = load_policy(GOVERNED).policy_version
    file = tmp_path / "governed.yaml"
    file.write_text(GOVERNED)
    wait_until(lambda: policies_readable(s), "the policies topic has a leader")
    proposed = cli(s, a, "propose", str(file), *as_(a, "ana"))
    assert proposed.exit_code == 0, proposed.output
    assert list(read_policies(s).pending) == [v2]

    rejected = cli(s, a, "reject", v2, "--by", "ben", "--reason", "not this quarter")
    assert rejected.exit_code == 0, rejected.output
    state = read_policies(s)
    assert state.pending == {} and state.active is None
    again = cli(s, a, "approve", v2, *as_(a, "ben"))
    assert again.exit_code == 1 and "no change is pending" in again.output

    proposal, rejection = policy_audits(s, 2)
    assert (proposal["outcome"], proposal["agent"]) == ("policy_proposed", "ana")
    assert (rejection["outcome"], rejection["agent"], rejection["policy_version"]) == (
        "policy_rejected",
        "ben",
        v2,
    )
    assert rejection["reason"] == f"policy {v2} proposed by ana rejected by ben: not this quarter"
    assert [t["reason"] for t in rejection["trace"][:2]] == ["proposed by ana", "rejected by ben"]


def signed(text: str, **kwargs: Any) -> bytes:
    return signed_record_value(text, KEYS, at=int(time.time() * 1000), **kwargs)


def rejected_or_applied(worker: WorkerProcess, refused: int, version: str) -> bool:
    """The worker refused `refused` records, or (the failure) put `version` in force."""
    counted = f'tower_policy_rejected_total{{reason="unapproved"}} {refused:.1f}'
    return counted in worker.metrics_text() or healthz(worker.web_port) == version


@pytest.mark.parametrize(
    ("forgery", "why"),
    [
        # one operator, two names: ana proposes, then "ben" approves with ana's key
        ({"approver_key": "ana"}, "approval signature of 'ben' does not verify"),
        # a forged approval signature: a key the approvers file does not list
        ({"approver_key": "mallory"}, "approval signature of 'ben' does not verify"),
        # ... or a forged proposal
        ({"proposer_key": "mallory"}, "proposal signature of 'ana' does not verify"),
    ],
)
def test_one_person_cannot_pass_four_eyes_alone(tower_settings, worker, approvers, forgery, why):
    """Records produced straight to `policies`, around the CLI, named ana and ben."""
    s = tower_settings
    v2, v3 = load_policy(GOVERNED).policy_version, load_policy(PLAIN).policy_version
    worker.extra_env["TOWER_POLICY_APPROVERS_FILE"] = approvers["approvers"]
    worker.start()
    wait_until(lambda: healthz(worker.web_port) is not None, "worker up")
    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, signed(GOVERNED))])
    wait_until(lambda: healthz(worker.web_port) == v2, f"worker switched to {v2}")

    produce(s.bootstrap, s.topics.policies, [(ACTIVE_KEY, signed(PLAIN, **forgery))])
    wait_until(lambda: rejected_or_applied(worker, 1, v3), "the worker decided on the forgery")
    assert healthz(worker.web_port) == v2, f"the forgery ({forgery}) came into force"
    worker.stop()
    assert why in (worker.log_dir / f"worker-{worker.starts}.log").read_text()
