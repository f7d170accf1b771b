"""`tower policy propose / approve / reject / pending`, and `publish` under four eyes,
through the real CLI against an in-memory policies topic (the broker calls are faked at the
module's edge; reading, deciding and writing are the real code)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.contracts.codec import decode_record
from pipeline.contracts.policy_record import (
    ACTIVE_KEY,
    decode_policy_record,
    encode_policy_record,
    pending_key,
    version_key,
)
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_document import load_policy
from pipeline.kafka.policy_follower import PolicyFollower
from pipeline.ops import policy_commands
from pipeline.ops.cli import main
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings

AGENTS = "agents: [promo-bot]\n"
GOVERNED = "version: 2.0.0\n" + AGENTS + "governance: {require_approval: true}\n"
GOVERNED_V3 = GOVERNED.replace("2.0.0", "3.0.0") + "kill_switch: {agents: [promo-bot]}\n"
PLAIN = "version: 1.5.0\n" + AGENTS
V2, V3, V15 = (load_policy(t).policy_version for t in (GOVERNED, GOVERNED_V3, PLAIN))


@dataclass
class Msg:
    topic: str
    _key: bytes
    _value: bytes | None
    _offset: int

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset


@dataclass
class FakeKafka:
    logs: dict[str, list[Msg]] = field(default_factory=dict)

    def records(self, topic: str) -> list[Msg]:
        return self.logs.setdefault(topic, [])

    def producer(self, settings: Settings, **conf: Any) -> FakeProducer:
        return FakeProducer(self)


@dataclass
class FakeProducer:
    kafka: FakeKafka
    unflushed: list[tuple[Msg, Any]] = field(default_factory=list)

    def produce(self, topic: str, key: bytes, value: bytes | None, on_delivery: Any) -> None:
        log = self.kafka.records(topic)
        msg = Msg(topic, key, value, len(log))
        log.append(msg)
        self.unflushed.append((msg, on_delivery))

    def flush(self, timeout: float) -> int:
        for msg, callback in self.unflushed:
            callback(None, msg)
        self.unflushed.clear()
        return 0


class Closeable:
    def close(self) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKafka]:
    fake = FakeKafka()
    m = policy_commands
    monkeypatch.setattr(m, "wait_for_broker", lambda settings, timeout: None)
    monkeypatch.setattr(m, "list_topics", lambda settings, timeout: {settings.topics.policies})
    monkeypatch.setattr(m, "scan_consumer", lambda settings, name, timeout: Closeable())
    monkeypatch.setattr(m, "watermarks", lambda c, t, p, timeout: (0, len(fake.records(t))))
    monkeypatch.setattr(
        m, "read_range", lambda c, t, p, low, end, timeout: iter(fake.records(t)[low:end])
    )
    monkeypatch.setattr(m.clients, "producer", fake.producer)
    yield fake


S = Settings()


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["policy", *args])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"p{abs(hash(text))}.yaml"
    path.write_text(text)
    return str(path)


def keys(kafka: FakeKafka) -> list[bytes]:
    return [m.key() for m in kafka.records(S.topics.policies)]


def audits(kafka: FakeKafka) -> list[dict[str, Any]]:
    return [decode_record("audit_record", m.value() or b"") for m in kafka.records(S.topics.audit)]


def worker_policy(kafka: FakeKafka) -> str:
    """What a worker replaying the topic from the beginning ends up with."""
    follower = PolicyFollower(S, DEFAULT_POLICY, TowerMetrics())
    for msg in kafka.records(S.topics.policies):
        follower.apply(msg.key(), msg.value())
    return follower.current().policy_version


def test_publish_is_unchanged_when_no_policy_asks_for_approval(kafka, tmp_path):
    result = run("publish", write(tmp_path, PLAIN), "--by", "ana")
    assert result.exit_code == 0, result.output
    assert keys(kafka) == [version_key(V15), ACTIVE_KEY]
    record = decode_policy_record(kafka.records(S.topics.policies)[-1].value())
    assert (record.proposed_by, record.approved_by) == (None, None)
    [audit] = audits(kafka)
    assert (audit["outcome"], audit["agent"]) == ("policy_changed", "ana")
    assert audit["trace"] == [] and "proposed by" not in audit["reason"]  # no setting changed
    assert worker_policy(kafka) == V15


@pytest.mark.parametrize(
    ("history", "text", "why"),
    [
        ([], GOVERNED, f"{V2} sets governance.require_approval"),
        ([GOVERNED], GOVERNED_V3, f"the policy in force ({V2}) has governance.require_approval"),
        ([GOVERNED], PLAIN, "the policy in force"),  # switching it off needs four eyes too
    ],
)
def test_publish_refuses_and_points_to_propose_and_approve(kafka, tmp_path, history, text, why):
    for old in history:  # put it in force the proper way
        assert run("propose", write(tmp_path, old), "--by", "ana").exit_code == 0
        assert run("approve", load_policy(old).policy_version, "--by", "ben").exit_code == 0
    before = (list(keys(kafka)), len(audits(kafka)))
    path = write(tmp_path, text)
    result = run("publish", path, "--by", "ana")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert why in result.output
    assert f"tower policy propose {path} --by ana" in result.output
    assert f"tower policy approve {load_policy(text).policy_version} --by NAME" in result.output
    assert (keys(kafka), len(audits(kafka))) == before


def test_propose_then_approve_by_someone_else(kafka, tmp_path):
    proposed = run("propose", write(tmp_path, GOVERNED), "--by", "ana")
    assert proposed.exit_code == 0, proposed.output
    assert f"proposed {V2} (in force: {DEFAULT_POLICY.policy_version})" in proposed.output
    assert "governance.require_approval: False -> True" in proposed.output
    assert keys(kafka) == [pending_key(V2)]
    assert worker_policy(kafka) == DEFAULT_POLICY.policy_version  # nothing changed yet

    listed = run("pending")
    assert listed.exit_code == 0 and f"{V2}  proposed by ana at " in listed.output

    approved = run("approve", V2, "--by", "ben")
    assert approved.exit_code == 0, approved.output
    assert f"approved {V2} (proposed by ana, approved by ben)" in approved.output
    assert keys(kafka) == [pending_key(V2), version_key(V2), ACTIVE_KEY, pending_key(V2)]
    assert kafka.records(S.topics.policies)[-1].value() is None  # the proposal is closed
    active = decode_policy_record(kafka.records(S.topics.policies)[2].value())
    assert (active.proposed_by, active.approved_by, active.published_by) == ("ana", "ben", "ben")
    assert active.approved_at is not None and active.proposed_at is not None
    assert worker_policy(kafka) == V2
    assert run("pending").output.strip() == "no policy change pending"

    shown = run("show")
    assert "proposed        " in shown.output and "by ana" in shown.output
    assert "approved        " in shown.output and "by ben" in shown.output

    proposal, change = audits(kafka)
    assert (proposal["outcome"], proposal["agent"], proposal["policy_version"]) == (
        "policy_proposed",
        "ana",
        V2,
    )
    assert (change["outcome"], change["agent"], change["policy_version"]) == (
        "policy_changed",
        "ben",
        V2,
    )
    assert change["reason"].endswith("[proposed by ana, approved by ben]")
    assert change["trace"][:2] == [
        {"rule": "governance", "verdict": "propose", "reason": "proposed by ana"},
        {"rule": "governance", "verdict": "approve", "reason": "approved by ben"},
    ]
    assert change["trace"][2]["reason"] == "governance.require_approval: False -> True"


@pytest.mark.parametrize("approver", ["ana", "Ana", " ana "])
def test_the_proposer_cannot_approve(kafka, tmp_path, approver):
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0
    before = (list(keys(kafka)), len(audits(kafka)))
    result = run("approve", V2, "--by", approver)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{V2} was proposed by ana, who cannot also approve it (four eyes)" in result.output
    assert f"tower policy approve {V2} --by NAME" in result.output
    assert (keys(kafka), len(audits(kafka))) == before
    assert f"{V2}  proposed by ana" in run("pending").output


def test_approve_and_reject_name_the_pending_versions(kafka, tmp_path):
    for cmd in ("approve", "reject"):
        none = run(cmd, V3, "--by", "ben")
        assert none.exit_code == 1 and "no change is pending" in none.output
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0
    for cmd in ("approve", "reject"):
        other = run(cmd, V3, "--by", "ben")
        assert other.exit_code == 1
        assert f"{V3} is not pending; pending: {V2} (by ana)" in other.output


def test_reject_closes_the_proposal_and_audits_both_names(kafka, tmp_path):
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0
    result = run("reject", V2, "--by", "ben", "--reason", "too strict for Q4")
    assert result.exit_code == 0, result.output
    assert keys(kafka) == [pending_key(V2), pending_key(V2)]
    assert kafka.records(S.topics.policies)[-1].value() is None
    assert run("pending").output.strip() == "no policy change pending"
    assert worker_policy(kafka) == DEFAULT_POLICY.policy_version
    rejected = audits(kafka)[-1]
    assert (rejected["outcome"], rejected["agent"], rejected["policy_version"]) == (
        "policy_rejected",
        "ben",
        V2,
    )
    assert rejected["reason"] == f"policy {V2} proposed by ana rejected by ben: too strict for Q4"
    assert [s["verdict"] for s in rejected["trace"][:2]] == ["propose", "reject"]
    assert decode_policy_record(rejected["input"].encode()).proposed_by == "ana"
    # rejected, so it cannot be approved any more; it can be proposed again
    assert run("approve", V2, "--by", "carol").exit_code == 1
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0


def test_the_proposer_may_withdraw_and_reasons_default(kafka, tmp_path):
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0
    result = run("reject", V2, "--by", "ana")
    assert result.exit_code == 0, result.output
    assert audits(kafka)[-1]["reason"].endswith("rejected by ana: no reason given")


@pytest.mark.parametrize(
    ("setup", "text", "message"),
    [
        ([("propose", GOVERNED)], GOVERNED, f"{V2} is already pending, proposed by ana"),
        ([("propose", GOVERNED), ("approve", V2)], GOVERNED, "already the policy in force"),
    ],
)
def test_propose_refuses_what_is_pending_or_in_force(kafka, tmp_path, setup, text, message):
    for cmd, arg in setup:
        target = write(tmp_path, arg) if cmd == "propose" else arg
        who = "ana" if cmd == "propose" else "ben"
        assert run(cmd, target, "--by", who).exit_code == 0
    result = run("propose", write(tmp_path, text), "--by", "carol")
    assert result.exit_code == 1 and message in result.output


def test_a_forged_active_record_is_not_what_show_reports(kafka, tmp_path):
    """`show` reads the topic like a worker, so a record workers refuse is not shown."""
    assert run("propose", write(tmp_path, GOVERNED), "--by", "ana").exit_code == 0
    assert run("approve", V2, "--by", "ben").exit_code == 0
    plain = policy_commands.PolicyRecord(
        "1.5.0", V15, load_policy(PLAIN).content_hash, PLAIN, 0, "mallory"
    )
    log = kafka.records(S.topics.policies)
    log.append(Msg(S.topics.policies, ACTIVE_KEY, encode_policy_record(plain), len(log)))
    assert worker_policy(kafka) == V2
    active = policy_commands.read_active(S)
    assert active is not None and active.policy.policy_version == V2
    assert f"policy_version  {V2}" in run("show").output


def test_an_empty_name_is_refused(kafka, tmp_path):
    result = run("propose", write(tmp_path, GOVERNED), "--by", " ")
    assert result.exit_code == 1 and "--by is empty" in result.output
    assert keys(kafka) == []
