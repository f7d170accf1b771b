"""Crashes and rebalances on both runtimes, against the pure core's clean run.

The Faust runtime is at-least-once (identical re-emits after a crash are allowed, nothing
may be lost or differ); the transactional runtime is exactly-once for a read_committed
reader. `make soak` runs the same scenarios ten times each (tests/integration/test_soak.py).
"""

from __future__ import annotations

import pytest

from tests.integration import scenarios

pytestmark = pytest.mark.integration

RUNTIME_NAMES = ["faust", "transactional"]


@pytest.mark.parametrize("runtime", RUNTIME_NAMES)
def test_sigkill_mid_stream_loses_nothing(tower_settings, worker, runtime):
    worker.extra_env["TOWER_RUNTIME"] = runtime
    tally = scenarios.sigkill_mid_stream(tower_settings, worker, runtime)
    tally.assert_clean(exactly_once=runtime == "transactional", worker=worker)


@pytest.mark.parametrize("runtime", RUNTIME_NAMES)
def test_twenty_thousand_held_proposals_survive_two_sigkills(
    tower_settings, worker, tmp_path, runtime
):
    worker.extra_env["TOWER_RUNTIME"] = runtime
    tally = scenarios.held_through_two_sigkills(tower_settings, worker, tmp_path, runtime)
    print(tally)
    tally.assert_clean(exactly_once=runtime == "transactional", worker=worker)


@pytest.mark.parametrize("runtime", RUNTIME_NAMES)
def test_a_second_worker_joins_and_leaves_mid_stream(tower_settings, worker, tmp_path, runtime):
    worker.extra_env["TOWER_RUNTIME"] = runtime
    tally = scenarios.join_and_leave(tower_settings, worker, tmp_path, runtime)
    tally.assert_clean(exactly_once=runtime == "transactional", worker=worker)
