"""`tower policy keygen / propose / approve / reject / pending`, and `publish` under four
eyes, through the real CLI against an in-memory policies topic (the broker calls are faked at
the module's edge; reading, signing, deciding and writing are the real code). Every operator
has a key made in tmp_path; the approvers file lists ana, ben and carol."""

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
    PolicyRecord,
    decode_policy_record,
    encode_policy_record,
    pending_key,
    version_key,
)
from pipeline.contracts.policy_signatures import fingerprint
from pipeline.core.policy import DEFAULT_POLICY
from pipeline.core.policy_document import load_policy
from pipeline.kafka.policy_follower import PolicyFollower, load_approvers
from pipeline.ops.cli import main
from pipeline.ops.policy import commands, governance, policy_topic, signing_keys
from pipeline.processing.metrics import TowerMetrics
from pipeline.settings import Settings
from tests.policy_signing import Keyring, raw_public

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


KEYS = Keyring()
KEY_FILES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def approvers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ana, ben and carol are approvers; each has a private key file (mode 0600)."""
    path = KEYS.approvers_file(tmp_path / "approvers", "ana", "ben", "carol")
    monkeypatch.setenv("TOWER_POLICY_APPROVERS_FILE", str(path))
    monkeypatch.delenv("TOWER_POLICY_KEY_FILE", raising=False)
    for name in ("ana", "ben", "carol", "mallory"):
        KEY_FILES[name] = str(KEYS.private_key_file(tmp_path / f"{name}.key", name))
    return path


def as_(name: str, key_of: str | None = None) -> tuple[str, ...]:
    """`--by NAME --key KEY` (the key of `key_of`, default NAME's own)."""
    return ("--by", name, "--key", KEY_FILES[(key_of or name).strip().lower()])


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKafka]:
    fake = FakeKafka()
    for m in (commands, governance):
        monkeypatch.setattr(m, "wait_for_broker", lambda settings, timeout: None)
    m = policy_topic
    monkeypatch.setattr(m, "list_topics", lambda settings, timeout: {settings.topics.policies})
    monkeypatch.setattr(m, "scan_consumer", lambda settings, name, timeout: Closeable())
    monkeypatch.setattr(m, "watermarks", lambda c, t, p, timeout: (0, len(fake.records(t))))
    monkeypatch.setattr(
        m, "read_range", lambda c, t, p, low, end, timeout: iter(fake.records(t)[low:end])
    )
    monkeypatch.setattr(governance.clients, "producer", fake.producer)
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
    approvers = load_approvers(Settings.from_env().policy_approvers_file)
    follower = PolicyFollower(S, DEFAULT_POLICY, TowerMetrics(), approvers=approvers)
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
        assert run("propose", write(tmp_path, old), *as_("ana")).exit_code == 0
        assert run("approve", load_policy(old).policy_version, *as_("ben")).exit_code == 0
    before = (list(keys(kafka)), len(audits(kafka)))
    path = write(tmp_path, text)
    result = run("publish", path, "--by", "ana")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert why in result.output
    assert f"tower policy propose {path} --key YOUR_KEY" in result.output
    assert (
        f"tower policy approve {load_policy(text).policy_version} --key THEIR_KEY" in result.output
    )
    assert (keys(kafka), len(audits(kafka))) == before


def test_propose_then_approve_by_someone_else(kafka, tmp_path):
    proposed = run("propose", write(tmp_path, GOVERNED), *as_("ana"))
    assert proposed.exit_code == 0, proposed.output
    assert f"proposed {V2} (in force: {DEFAULT_POLICY.policy_version})" in proposed.output
    assert "governance.require_approval: False -> True" in proposed.output
    assert keys(kafka) == [pending_key(V2)]
    assert worker_policy(kafka) == DEFAULT_POLICY.policy_version  # nothing changed yet

    listed = run("pending")
    assert listed.exit_code == 0 and f"{V2}  proposed by ana at " in listed.output

    approved = run("approve", V2, *as_("ben"))
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
    ana, ben = (fingerprint(raw_public(KEYS[n])) for n in ("ana", "ben"))
    assert change["trace"][2] == {
        "rule": "governance",
        "verdict": "verified",
        "reason": f"proposed by ana ({ana}), approved by ben ({ben})",
    }
    assert change["trace"][3]["reason"] == "governance.require_approval: False -> True"
    # the audit record's input is the signed record: an auditor can verify it offline
    signed = decode_policy_record(change["input"].encode())
    assert signed.proposal_signature and signed.approval_signature
    assert f"signatures      proposed by ana ({ana}), approved by ben ({ben})" in shown.output


@pytest.mark.parametrize("approver", ["ana", "Ana", " ana "])
def test_the_proposer_cannot_approve(kafka, tmp_path, approver):
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
    before = (list(keys(kafka)), len(audits(kafka)))
    result = run("approve", V2, *as_(approver))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{V2} was proposed by ana, who cannot also approve it (four eyes)" in result.output
    assert f"tower policy approve {V2} --key THEIR_KEY" in result.output
    assert (keys(kafka), len(audits(kafka))) == before
    assert f"{V2}  proposed by ana" in run("pending").output


def test_approve_and_reject_name_the_pending_versions(kafka, tmp_path):
    for cmd in ("approve", "reject"):
        none = run(cmd, V3, *(as_("ben") if cmd == "approve" else ("--by", "ben")))
        assert none.exit_code == 1 and "no change is pending" in none.output
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
    for cmd in ("approve", "reject"):
        other = run(cmd, V3, *(as_("ben") if cmd == "approve" else ("--by", "ben")))
        assert other.exit_code == 1
        assert f"{V3} is not pending; pending: {V2} (by ana)" in other.output


def test_reject_closes_the_proposal_and_audits_both_names(kafka, tmp_path):
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
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
    assert run("approve", V2, *as_("carol")).exit_code == 1
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0


def test_the_proposer_may_withdraw_and_reasons_default(kafka, tmp_path):
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
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
        assert run(cmd, target, *as_(who)).exit_code == 0
    result = run("propose", write(tmp_path, text), *as_("carol"))
    assert result.exit_code == 1 and message in result.output


def test_a_forged_active_record_is_not_what_show_reports(kafka, tmp_path):
    """`show` reads the topic like a worker, so a record workers refuse is not shown."""
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
    assert run("approve", V2, *as_("ben")).exit_code == 0
    plain = PolicyRecord("1.5.0", V15, load_policy(PLAIN).content_hash, PLAIN, 0, "mallory")
    log = kafka.records(S.topics.policies)
    log.append(Msg(S.topics.policies, ACTIVE_KEY, encode_policy_record(plain), len(log)))
    assert worker_policy(kafka) == V2
    active = policy_topic.read_active(Settings.from_env())
    assert active is not None and active.policy.policy_version == V2
    assert f"policy_version  {V2}" in run("show").output


def test_an_empty_name_is_refused(kafka, tmp_path):
    result = run("propose", write(tmp_path, GOVERNED), "--by", " ")
    assert result.exit_code == 1 and "--by is empty" in result.output
    assert keys(kafka) == []


def test_keygen_writes_a_private_key_only_its_owner_reads_and_the_approvers_line(tmp_path):
    out = tmp_path / "keys"
    made = run("keygen", "--name", "dora", "--out", str(out))
    assert made.exit_code == 0, made.output
    private, public = out / "dora.key", out / "dora.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    line = public.read_text().strip()
    assert line.startswith("dora ") and made.output.strip().endswith(line)
    # the line makes a valid approvers file, and the key signs what it verifies
    from pipeline.contracts.policy_signatures import parse_approvers

    assert parse_approvers(line, "a").keys_of("dora") == (signing_keys.read_key(private).public,)
    again = run("keygen", "--name", "dora", "--out", str(out))
    assert again.exit_code == 1 and f"{private} exists" in again.output
    assert run("keygen", "--name", "two words", "--out", str(out)).exit_code == 1


def test_a_signed_change_can_be_made_with_keys_alone(kafka, tmp_path, monkeypatch):
    """No --by: the name is the key's in the approvers file; TOWER_POLICY_KEY_FILE works."""
    monkeypatch.setenv("TOWER_POLICY_KEY_FILE", KEY_FILES["ana"])
    assert run("propose", write(tmp_path, GOVERNED)).exit_code == 0
    approved = run("approve", V2, "--key", KEY_FILES["ben"])
    assert approved.exit_code == 0, approved.output
    assert "(proposed by ana, approved by ben)" in approved.output
    assert worker_policy(kafka) == V2


@pytest.mark.parametrize(
    ("name", "key_of", "message"),
    [
        # one operator typing a second name, with their own key
        ("ben", "ana", "is ana's key in the approvers file, not ben's"),
        # ... or a second name that is not in the approvers file at all
        ("zed", "ana", "is ana's key in the approvers file, not zed's"),
        # a key nobody listed
        ("ben", "mallory", "is not ben's in the approvers file"),
        # no key at all
        ("ben", None, "the approval must be signed: pass --key PATH"),
    ],
)
def test_one_person_cannot_approve_under_another_name(kafka, tmp_path, name, key_of, message):
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
    before = (list(keys(kafka)), len(audits(kafka)))
    result = run("approve", V2, *(as_(name, key_of) if key_of else ("--by", name)))
    assert result.exit_code == 1 and message in result.output
    assert (keys(kafka), len(audits(kafka))) == before


def test_the_same_key_cannot_approve_even_without_an_approvers_file(kafka, tmp_path, monkeypatch):
    monkeypatch.delenv("TOWER_POLICY_APPROVERS_FILE")
    assert run("propose", write(tmp_path, GOVERNED), *as_("ana")).exit_code == 0
    result = run("approve", V2, *as_("ben", key_of="ana"))
    assert result.exit_code == 1
    assert f"{V2} was proposed with this same key (ed25519:" in result.output
    # and with another key, the CLI will not write what no worker could verify
    other = run("approve", V2, *as_("ben"))
    assert other.exit_code == 1 and "would be refused by every worker" in other.output
    assert "set TOWER_POLICY_APPROVERS_FILE" in other.output


def test_a_proposal_under_four_eyes_must_be_signed(kafka, tmp_path):
    result = run("propose", write(tmp_path, GOVERNED), "--by", "ana")
    assert result.exit_code == 1
    assert (
        "so the proposal must be signed: pass --key PATH or set TOWER_POLICY_KEY_FILE"
        in result.output
    )
    assert keys(kafka) == []


def test_a_key_others_can_read_is_refused(kafka, tmp_path):
    loose = KEYS.private_key_file(tmp_path / "loose.key", "ana")
    loose.chmod(0o644)
    result = run("propose", write(tmp_path, GOVERNED), "--by", "ana", "--key", str(loose))
    assert result.exit_code == 1
    assert (
        f"--key {loose} is readable by others (mode 0644): run `chmod 600 {loose}`" in result.output
    )
