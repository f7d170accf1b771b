"""A run recorded by issue 15's commit (6738b7c, before the performance work) against the
current code: `tower replay` still matches every decision, and the worker's output records
are the same bytes, from empty states and from the states that commit stored.

The recording is `tests/data/recorded-run-6738b7c.json.gz`, made by `tests/recorded_run.py`
in a worktree of that commit (its docstring says how).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pipeline.contracts.codec import decode_record
from pipeline.core.replay import MATCH, catalog, replay_all
from pipeline.processing.batch import DictStateStore
from tests import recorded_run as run
from tests.recorded_run import Recording

RECORDING = Path(__file__).resolve().parents[2] / "data" / "recorded-run-6738b7c.json.gz"


@cache
def recording() -> Recording:
    return Recording.read(RECORDING)


def test_the_simulator_still_makes_the_recorded_inputs():
    """Otherwise the comparisons below compare different runs: record again."""
    assert run.inputs_digest(run.inputs()) == recording().inputs_sha256


def test_replay_matches_every_recorded_decision():
    proc = run.processor()
    audit = [
        decode_record("audit_record", value)
        for topic, _, value, _ in [*recording().phase_one, *recording().phase_two]
        if topic == proc.settings.topics.audit
    ]
    outcomes = {record["outcome"] for record in audit}
    assert {"held", "merged", "duplicate", "escalated", "withheld", "deferred"} <= outcomes
    assert [r.status for r in replay_all(audit, catalog([proc.policy()]))] == [MATCH] * len(audit)


def test_the_same_output_bytes_from_empty_states():
    inputs = run.inputs()[: run.PHASE_ONE]
    produced = run.run_phase(run.processor(), inputs, DictStateStore(), [])
    assert produced == recording().phase_one


def test_the_same_output_bytes_from_the_states_the_old_commit_stored():
    store = DictStateStore()
    store.data = dict(recording().states)
    wakeups = list(recording().pending_wakeups)
    assert store.data and wakeups  # the second phase starts mid-journey, holds open
    inputs = run.inputs()[run.PHASE_ONE :]
    produced = run.run_phase(run.processor(), inputs, store, wakeups)
    assert produced == recording().phase_two
