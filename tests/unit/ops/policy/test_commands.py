"""`tower policy validate` and `tower policy diff` through the real CLI entry point."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from pipeline.contracts.codec import canonical_event_json
from pipeline.core.arbitration import decide
from pipeline.core.policy_document import load_policy_file
from pipeline.core.state import EMPTY_STATE
from pipeline.ops.cli import main
from pipeline.ops.simulator import AgentSimulator

DEFAULT_YAML = Path(__file__).resolve().parents[4] / "deploy" / "policy.default.yaml"
TIGHTER = """\
version: 1.1.0
agents: [winback-bot, upsell-bot, promo-bot, care-bot, notify-bot]
caps:
  - name: per-channel-daily
    limit: 1
    window_ms: 86400000
kill_switch:
  agents: [promo-bot]
"""
BAD = """\
version: one
agents: [promo-bot]
caps:
  - name: daily
    limit: -1
    window_ms: 86400000
kill_switch:
  agents: [ghost-bot]
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_prints_the_version_of_a_good_file():
    result = run("policy", "validate", str(DEFAULT_YAML))
    policy = load_policy_file(DEFAULT_YAML)
    assert result.exit_code == 0, result.output
    assert policy.policy_version in result.output


def test_validate_lists_every_error_with_its_line(tmp_path):
    path = write(tmp_path, "bad.yaml", BAD)
    result = run("policy", "validate", str(path))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:1", "version"],
        [f"{path}:5", "caps[0].limit"],
        [f"{path}:8", "kill_switch.agents[0]"],
    ]
    assert "Traceback" not in result.output


def write_events(tmp_path: Path, total: int, bad_lines: int = 0) -> tuple[Path, list]:
    records = AgentSimulator(customers=200, seed=3).records(total)
    events = [r.event for r in records if r.event is not None]
    lines = [canonical_event_json(e) for e in events]
    for i in range(bad_lines):
        lines.insert(i * 7, '{"event_id": "broken"}' if i % 2 else "not json")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, events


def outcomes_under(policy_path: Path, events: list) -> Counter[str]:
    """Independent of whatif.py: the pure core, customer by customer, in order."""
    policy = load_policy_file(policy_path)
    states: dict = {}
    out: Counter[str] = Counter()
    for ev in events:
        d, states[ev.customer_id] = decide(
            states.get(ev.customer_id, EMPTY_STATE), ev, policy, ev.occurred_at
        )
        out[d.outcome] += 1
    return out


@pytest.mark.parametrize("as_json", [True, False])
def test_diff_over_ten_thousand_recorded_events(tmp_path, as_json):
    events_path, events = write_events(tmp_path, 10_000, bad_lines=2)
    new = write(tmp_path, "new.yaml", TIGHTER)
    args = ["policy", "diff", str(DEFAULT_YAML), str(new), "--events", str(events_path)]
    result = run(*args, *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.output
    old_counts = outcomes_under(DEFAULT_YAML, events)
    new_counts = outcomes_under(new, events)
    assert len(events) == 10_000 and old_counts != new_counts
    if not as_json:
        lines = result.output.splitlines()
        table = lines[lines.index(next(x for x in lines if x.startswith("outcome"))) + 1 :]
        rows = {
            x.split()[0]: x.split()[1:] for x in table[: table.index("") if "" in table else None]
        }
        for outcome in old_counts | new_counts:
            old_n, new_n = old_counts[outcome], new_counts[outcome]
            assert rows[outcome] == [str(old_n), str(new_n), f"{new_n - old_n:+d}"]
        assert rows["total"] == ["10000", "10000", "+0"]
        assert "suppressed/kill_switch" in result.output
        assert "skipped 2 invalid record(s)" in result.output
        return
    data = orjson.loads(result.output)
    assert data["events"] == 10_000 and data["skipped"] == 2
    assert data["old_outcomes"] == dict(old_counts)
    assert data["new_outcomes"] == dict(new_counts)
    assert sum(t["count"] for t in data["transitions"]) == 10_000
    changed = [t for t in data["transitions"] if t["old"] != t["new"]]
    assert data["changed"] == sum(t["count"] for t in changed) > 0
    assert all(1 <= len(t["examples"]) <= 3 for t in changed)
    # both intended effects are there: the kill switch and the tighter cap
    assert {"suppressed/kill_switch", "suppressed/frequency_cap"} <= {t["new"] for t in changed}
    assert data["settings_changed"][:2] == [
        "caps.per-channel-daily.limit: 3 -> 1",
        "kill_switch.agents: +promo-bot",
    ]


def test_diff_of_a_policy_with_itself_changes_nothing(tmp_path):
    events_path, _ = write_events(tmp_path, 300)
    result = run(
        "policy", "diff", str(DEFAULT_YAML), str(DEFAULT_YAML), "--events", str(events_path)
    )
    assert result.exit_code == 0, result.output
    assert "changed decisions: 0 (0.0%)" in result.output
    assert "no decision changes" in result.output


def test_diff_limit_and_missing_source(tmp_path):
    events_path, _ = write_events(tmp_path, 300)
    args = ["policy", "diff", str(DEFAULT_YAML), str(DEFAULT_YAML), "--json"]
    limited = run(*args, "--events", str(events_path), "--limit", "50")
    assert orjson.loads(limited.output)["events"] == 50
    missing = run(*args, "--events", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "no such file" in missing.output
