"""`tower audit | explain | replay` through click, with the topics served from memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from pipeline.contracts.audit_chain import Break, PartitionCheck
from pipeline.contracts.codec import encode_record
from pipeline.contracts.events import Source
from pipeline.contracts.policy_record import PolicyRecord, encode_policy_record, version_key
from pipeline.core.arbitration import decide
from pipeline.core.policy import DEFAULT_POLICY, Policy
from pipeline.core.policy_document import load_policy
from pipeline.core.state import EMPTY_STATE, CustomerState
from pipeline.kafka.reader import ScanError, TopicRecord
from pipeline.ops import audit_commands, replay_policies
from pipeline.ops.cli import main
from pipeline.processing.records import audit_record
from pipeline.settings import Settings
from tests.factories import T0, consent, proposal

SETTINGS = Settings.from_env({})
AUDIT, APPROVED, POLICIES = (
    SETTINGS.topics.audit,
    SETTINGS.topics.approved,
    SETTINGS.topics.policies,
)
STRICT_YAML = "version: 2.0.0\ncaps:\n  - {name: one, limit: 1, window_ms: 86400000}\n"
STRICT = load_policy(STRICT_YAML)


def events() -> list[Any]:
    def story(c: str) -> list[Any]:
        first = proposal(c, T0, trigger="cart:1", channel="sms", category="service")
        return [
            consent(True, customer=c, at=T0 - 1),
            first,
            proposal(c, T0 + 1, trigger="cart:1", channel="sms", category="service"),
            *(proposal(c, T0 + 10 + i, channel="sms", category="service") for i in range(3)),
            first,
        ]

    return story("c1") + story("c2")


def decided(policy: Policy = DEFAULT_POLICY) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(audit records, approved actions) the worker would write for `events()`."""
    states: dict[str, CustomerState] = {}
    audits, actions = [], []
    for offset, ev in enumerate(events()):
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
        audits.append(audit_record(d, ev, Source("agent-events", 0, offset, None), T0 + 5))
        if d.action is not None:
            actions.append(d.action.to_dict())
    return audits, actions


Topics = dict[str, list[tuple[bytes | None, bytes | None]]]


def topics(
    audits: list[dict[str, Any]], actions: list[dict[str, Any]], policies: Topics | None = None
) -> Topics:
    return {
        AUDIT: [(a["customer_id"].encode(), encode_record("audit_record", a)) for a in audits],
        APPROVED: [
            (a["customer_id"].encode(), encode_record("approved_action", a, "json"))
            for a in actions
        ],
        **(policies or {}),
    }


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[Topics], None]:
    """Make every scan read from the given in-memory topics."""

    def install(data: Topics) -> None:
        def fake_scan(
            bootstrap: str, topic: str, *, keep: Any = None, **_: Any
        ) -> Iterator[TopicRecord]:
            if topic not in data:
                raise ScanError(f"topic {topic!r} does not exist on {bootstrap}")
            for offset, (k, v) in enumerate(data[topic]):
                if keep is None or keep(k, v):
                    yield TopicRecord(topic, 0, offset, k, v)

        monkeypatch.setattr(audit_commands, "scan_topic", fake_scan)
        monkeypatch.setattr(replay_policies, "scan_topic", fake_scan)

    return install


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"TOWER_BOOTSTRAP": "mem:1"})


def test_audit_lists_one_customers_decisions_in_order(serve) -> None:
    audits, actions = decided()
    serve(topics(audits, actions))
    res = run("audit", "c1")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == [
        "time",
        "decision",
        "event",
        "agent",
        "channel",
        "outcome",
        "rule",
        "reason",
    ]
    c1 = [a for a in audits if a["customer_id"] == "c1"]
    assert [line.split()[1] for line in lines[1:]] == [a["decision_id"] for a in c1]
    assert [line.split()[5] for line in lines[1:]] == [a["outcome"] for a in c1]
    # aligned: every row puts the outcome column at the same place
    assert len({line.index(a["outcome"]) for line, a in zip(lines[1:], c1, strict=True)}) == 1


def test_audit_json_and_since(serve) -> None:
    audits, actions = decided()
    serve(topics(audits, actions))
    res = run("audit", "c2", "--json", "--since", str(T0 + 10))
    assert res.exit_code == 0, res.output
    got = [orjson.loads(line) for line in res.output.splitlines()]
    want = [a for a in audits if a["customer_id"] == "c2" and a["decided_at"] >= T0 + 10]
    assert [g["decision_id"] for g in got] == [a["decision_id"] for a in want] and want
    iso = run("audit", "c2", "--json", "--since", "2026-01-01T00:00:00.010Z")
    assert iso.output == res.output


def test_explain_tells_input_policy_trace_outcome_and_action(serve) -> None:
    audits, actions = decided()
    serve(topics(audits, actions))
    target = next(a for a in audits if a["outcome"] == "approved")
    res = run("explain", target["decision_id"])
    assert res.exit_code == 0, res.output
    out = res.output
    for text in (
        target["decision_id"],
        "marketing-bot (marketing) proposed a service message (priority 50) to customer c1 on sms",
        "trigger cart:1",
        f"policy    {DEFAULT_POLICY.policy_version}",
        "1. replay: pass - first time this event id is seen",
        "outcome   approved: every rule passed",
        f"action    {target['action_id']}  ({APPROVED} partition 0",
        "message (service) on sms to c1, sent at once",
    ):
        assert text in out


def test_explain_shows_every_record_of_a_replayed_event(serve) -> None:
    audits, actions = decided()
    serve(topics(audits, actions))
    dup = next(a for a in audits if a["outcome"] == "duplicate")
    out = run("explain", dup["decision_id"]).output
    assert out.count(f"decision  {dup['decision_id']}") == 2
    assert "outcome   duplicate" in out and "outcome   approved" in out


def test_explain_unknown_id_is_one_line_and_exit_1(serve) -> None:
    serve(topics(*decided()))
    res = run("explain", "d-00000000000000000000")
    assert res.exit_code == 1 and res.output.startswith("error: no audit record")
    assert "Traceback" not in res.output


def _flip(audits: list[dict[str, Any]], outcome: str, to: str) -> dict[str, Any]:
    i = next(i for i, a in enumerate(audits) if a["outcome"] == outcome)
    audits[i] = {**audits[i], "outcome": to}
    return audits[i]


REPLAY_CASES = [
    # (what, how the topic is altered, extra args, exit code, texts expected in the output)
    (
        "clean, all",
        None,
        ["--all"],
        0,
        ["decisions replayed  14", "matched             14 (100.00%)"],
    ),
    (
        "clean, customer",
        None,
        ["--customer", "c2"],
        0,
        ["decisions replayed  7", "mismatched          0"],
    ),
    (
        "flipped outcome",
        ("approved", "suppressed"),
        ["--all"],
        1,
        [
            "mismatch",
            "outcome: recorded 'suppressed', replayed 'approved'",
            "recorded trace:",
            "replayed trace:",
            "mismatched          1",
        ],
    ),
]


@pytest.mark.parametrize(
    ("alter", "args", "code", "texts"),
    [c[1:] for c in REPLAY_CASES],
    ids=[c[0] for c in REPLAY_CASES],
)
def test_replay_reports(serve, alter, args, code, texts) -> None:
    audits, actions = decided()
    if alter:
        _flip(audits, *alter)
    serve(topics(audits, actions))
    res = run("replay", *args)
    assert res.exit_code == code, res.output
    for text in texts:
        assert text in res.output


def test_replay_one_decision_rebuilds_the_customers_history(serve) -> None:
    audits, actions = decided()
    serve(topics(audits, actions))
    dup = next(a for a in audits if a["outcome"] == "duplicate")
    res = run("replay", dup["decision_id"])
    assert res.exit_code == 0, res.output
    # the first decision and the duplicate share the id; both are checked
    assert [line.split()[1] for line in res.stdout.splitlines()] == ["match", "match"]
    altered = _flip(audits, "duplicate", "approved")
    serve(topics(audits, actions))
    res = run("replay", altered["decision_id"])
    assert res.exit_code == 1
    assert "recorded trace:" in res.output and "replayed trace:" in res.output


def _published(policy_yaml: str, filed_as: str) -> Topics:
    policy = load_policy(policy_yaml)
    record = PolicyRecord(
        policy.version, policy.policy_version, policy.content_hash, policy_yaml, T0, "test"
    )
    return {POLICIES: [(version_key(filed_as), encode_policy_record(record))]}


def test_replay_finds_policies_on_the_topic_and_in_files(serve, tmp_path: Path) -> None:
    audits, actions = decided(STRICT)
    serve(topics(audits, actions))
    unknown = run("replay", "--all")
    assert unknown.exit_code == 2
    assert f"unresolved policies 2 ({STRICT.policy_version})" in unknown.output
    # published on the policies topic
    serve(topics(audits, actions, _published(STRICT_YAML, STRICT.policy_version)))
    assert run("replay", "--all").exit_code == 0
    # given as a file
    serve(topics(audits, actions))
    path = tmp_path / "strict.yaml"
    path.write_text(STRICT_YAML)
    res = run("replay", "--all", "--policy", str(path))
    assert res.exit_code == 0, res.output


def test_a_published_record_filed_under_another_version_is_not_trusted(serve) -> None:
    audits, actions = decided(STRICT)
    serve(
        topics(
            audits,
            actions,
            _published(STRICT_YAML.replace("limit: 1", "limit: 2"), STRICT.policy_version),
        )
    )
    res = run("replay", "--all")
    assert res.exit_code == 2
    assert "skipping policy record" in res.output


USAGE_CASES = [[], ["d-1", "--all"], ["--customer", "c1", "--all"]]


@pytest.mark.parametrize("args", USAGE_CASES)
def test_replay_needs_exactly_one_target(serve, args) -> None:
    serve(topics(*decided()))
    res = run("replay", *args)
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_missing_audit_topic_is_a_friendly_error(serve) -> None:
    serve({})
    for args in (["audit", "c1"], ["replay", "--all"], ["explain", "d-1"]):
        res = run(*args)
        assert res.exit_code == 1 and "error: topic" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("check", "lines"),
    [
        (
            PartitionCheck(0, checked=5, runs=2, first_offset=3),
            ["audit partition 0: OK, 5 records in 2 runs from offset 3"],
        ),
        (
            PartitionCheck(1, checked=9, runs=2, outside=[4, 5, 6], unsealed=[9]),
            [
                "audit partition 1: no break in 9 records in 2 runs from offset 0, but not every "
                "record is sealed",
                "audit partition 1: 3 record(s) outside the chain (no seal covers them: not "
                "written by a worker, or by one stopped mid-run): offsets 4-6",
                "audit partition 1: 1 record(s) at the end not sealed (a worker may still be "
                "writing their run: verify again): offsets 9",
            ],
        ),
        (
            PartitionCheck(2, broken=Break(2, 8, 6, "why"), unprovable=[0, 1]),
            [
                "audit partition 2: BROKEN at offset 8 (the run from offset 6): why",
                "audit partition 2: 2 record(s) at the start not provable (their run began "
                "before the first record retention kept): offsets 0-1",
            ],
        ),
    ],
)
def test_verify_names_each_break_and_the_offsets_no_seal_covers(check, lines) -> None:
    assert audit_commands.render_check("audit", check, show=20) == lines


@pytest.mark.parametrize(
    ("offsets", "show", "text"),
    [
        ([3], 5, "3"),
        ([1, 2, 3, 7, 9, 10], 5, "1-3, 7, 9-10"),
        ([1, 3, 5], 2, "1, 3 and 1 more range(s)"),
    ],
)
def test_offsets_are_listed_as_ranges(offsets: list[int], show: int, text: str) -> None:
    assert audit_commands.spans(offsets, show) == text
