"""Crashes and rebalances on both runtimes, against the pure core's clean run.

The Faust runtime is at-least-once (identical re-emits after a crash are allowed, nothing
may be lost or differ); the transactional runtime is exactly-once for a read_committed
reader. `make soak` runs the same scenarios ten times each (tests/integration/test_soak.py).
"""

from __future__ import annotations

import pytest

from tests.integration import scenarios

pytestmark = pytest.mark.integration

ENGINES = ["faust", "native"]


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_mid_stream_loses_nothing(tower_settings, worker, engine):
    worker.extra_env["TOWER_ENGINE"] = engine
    tally = scenarios.sigkill_mid_stream(tower_settings, worker, engine)
    tally.assert_clean(exactly_once=engine == "native")


@pytest.mark.parametrize("engine", ENGINES)
def test_twenty_thousand_held_proposals_survive_two_sigkills(
    tower_settings, worker, tmp_path, engine
):
    worker.extra_env["TOWER_ENGINE"] = engine
    tally = scenarios.held_through_two_sigkills(tower_settings, worker, tmp_path, engine)
    print(tally)
    tally.assert_clean(exactly_once=engine == "native")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_worker_joins_and_leaves_mid_stream(tower_settings, worker, tmp_path, engine):
    worker.extra_env["TOWER_ENGINE"] = engine
    tally = scenarios.join_and_leave(tower_settings, worker, tmp_path, engine)
    tally.assert_clean(exactly_once=engine == "native")
