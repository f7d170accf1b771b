"""`tower replay`, `explain` and the customer page on minimised audit records: what cannot
be re-checked is listed and counted apart, and only a real mismatch fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.contracts.events import Source
from pipeline.core.policy_document import load_policy
from pipeline.ops import audit_render
from pipeline.processing.records import audit_record
from pipeline.web.customer_view import timeline_entry
from tests.factories import T0, consent, decide_all, proposal
from tests.unit.ops.test_audit_cli import run, serve, topics

__all__ = ["serve"]  # the fixture, shared with test_audit_cli

NONE_YAML = "version: 1.1.0\naudit: {input: none}\n"
HASH_YAML = "version: 1.2.0\naudit: {input: redacted, content: hash, salt: s}\n"
PII_YAML = "version: 1.3.0\nredact_pii: [email]\naudit: {input: redacted, content: hash, salt: s}\n"


def _events() -> list[Any]:
    def story(c: str) -> list[Any]:
        def pitch(at: int, **kw: Any) -> Any:
            text = f"hi {c}@example.com"
            return proposal(c, at, channel="sms", category="service", content=text, **kw)

        first = pitch(T0, trigger="cart:1")
        return [
            consent(True, customer=c, at=T0 - 1),
            first,
            pitch(T0 + 1, trigger="cart:1"),
            *(pitch(T0 + 10 + i) for i in range(3)),
            first,
        ]

    return story("c1") + story("c2")


def _recorded(policy_yaml: str, tmp_path: Path) -> tuple[list[dict[str, Any]], Any, Path]:
    """(audit records, approved actions, the policy file) of the worker under the policy."""
    policy = load_policy(policy_yaml)
    events = _events()
    decisions, actions = [], []
    for c in ("c1", "c2"):
        mine = [e for e in events if e.customer_id == c]
        decisions += list(zip(decide_all(mine, policy)[0], mine, strict=True))
    audits = [
        audit_record(d, ev, Source("agent-events", 0, i, None), T0 + 5, policy.audit)
        for i, (d, ev) in enumerate(decisions)
    ]
    actions = [d.action.to_dict() for d, _ in decisions if d.action is not None]
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml)
    return audits, actions, path


def test_replay_with_input_none_lists_what_it_cannot_recheck_and_exits_0(serve, tmp_path):
    audits, actions, path = _recorded(NONE_YAML, tmp_path)
    serve(topics(audits, actions))
    res = run("replay", "--all", "--policy", str(path), "--show", "2")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "decisions replayed  14" in out and "mismatched          0" in out
    assert "not re-checkable    14 decisions, input not kept (audit.input=none)" in out
    assert "not re-checkable under the policy's audit levels: 14" in out
    assert f"{audits[0]['decision_id']}  not-kept" in out
    assert "input not kept (audit.input=none)" in out
    assert "... and 12 more not re-checkable (see --show)" in out
    one = run("replay", audits[1]["decision_id"], "--policy", str(path))
    assert one.exit_code == 0 and "not-kept" in one.output


def test_a_forged_record_on_a_kept_input_still_fails(serve, tmp_path):
    audits, actions, path = _recorded(HASH_YAML, tmp_path)
    serve(topics(audits, actions))
    clean = run("replay", "--all", "--policy", str(path))
    assert clean.exit_code == 0, clean.output
    assert "matched             14 (100.00%)" in clean.output  # no content, no difference
    # the forged record's content was hashed: a difference there cannot be told apart
    i = next(i for i, a in enumerate(audits) if a["outcome"] == "approved")
    audits[i] = {**audits[i], "outcome": "suppressed"}
    serve(topics(audits, actions))
    res = run("replay", "--all", "--policy", str(path))
    assert res.exit_code == 0, res.output
    assert "unverifiable        1 decisions differ, but their input was minimised" in res.output
    assert "(audit.input=redacted, audit.content=hash)" in res.output
    # a consent signal keeps nothing minimisation would change: a forgery there is caught
    audits[0] = {**audits[0], "outcome": "suppressed"}
    serve(topics(audits, actions))
    assert run("replay", "--all", "--policy", str(path)).exit_code == 1


def test_a_decision_that_needed_the_text_is_unverifiable_not_a_mismatch(serve, tmp_path):
    audits, actions, path = _recorded(PII_YAML, tmp_path)
    serve(topics(audits, actions))
    res = run("replay", "--all", "--policy", str(path))
    assert res.exit_code == 0, res.output
    # the approved ones carry the PII transform's trace step, which needs the e-mail
    approved = sum(a["outcome"] == "approved" for a in audits)
    assert f"unverifiable        {approved} decisions differ" in res.output
    assert (
        "unverifiable c1  approved  - differs in trace, but the input was minimised" in res.output
    )


def test_explain_and_the_customer_page_read_a_stub(serve, tmp_path):
    audits, actions, _ = _recorded(NONE_YAML, tmp_path)
    serve(topics(audits, actions))
    target = next(a for a in audits if a["outcome"] == "approved")
    res = run("explain", target["decision_id"])
    assert res.exit_code == 0, res.output
    assert "input not kept (audit.input=none)" in res.output
    assert "outcome   approved: every rule passed" in res.output
    entry = timeline_entry(target)
    assert (entry["at"], entry["what"], entry["outcome"]) == (target["decided_at"], "-", "approved")


@pytest.mark.parametrize(
    ("policy_yaml", "shown"),
    [
        (HASH_YAML, "content 'sha256:"),
        ("version: 1.4.0\naudit: {input: redacted}\n", "content 'hi [redacted:email]'"),
    ],
)
def test_explain_shows_a_minimised_content_as_kept(policy_yaml, shown, tmp_path):
    audits, _, _ = _recorded(policy_yaml, tmp_path)
    target = next(a for a in audits if a["kind"] == "proposal")
    assert any(shown in line for line in audit_render.describe_input(target))
