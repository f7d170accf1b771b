"""`make soak`: every crash and rebalance scenario, `TOWER_SOAK_RUNS` times (default 10)
in a row on both runtimes. Each run appends its tally to `TOWER_SOAK_TALLY`;
`python -m tests.soak_tally FILE` prints the sums (runs, lost, changed, duplicates)."""

from __future__ import annotations

import os

import pytest

from tests.integration import scenarios

pytestmark = [pytest.mark.integration, pytest.mark.soak]

RUNS = range(1, int(os.environ.get("TOWER_SOAK_RUNS", "10")) + 1)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("runtime", ["faust", "transactional"])
@pytest.mark.parametrize("scenario", ["sigkill", "held", "join-leave"])
def test_repeated(tower_settings, worker, tmp_path, scenario, runtime, run):
    worker.extra_env["TOWER_RUNTIME"] = runtime
    if scenario == "sigkill":
        tally = scenarios.sigkill_mid_stream(tower_settings, worker, runtime)
    elif scenario == "held":
        tally = scenarios.held_through_two_sigkills(tower_settings, worker, tmp_path, runtime)
    else:
        tally = scenarios.join_and_leave(tower_settings, worker, tmp_path, runtime)
    tally.record()
    tally.assert_clean(exactly_once=runtime == "transactional", worker=worker)
