"""The soak-load verdict: each criterion passes on a steady run and fails on its own fault."""

from __future__ import annotations

import pytest

from bench.soak_load import Run, Sample, judge
from pipeline.ops.simulator import AgentSimulator


def _run(
    *,
    lag: float = 0.2,
    p99_late: float = 50.0,
    rss_end: float = 300.0,
    fds_end: int = 40,
    seconds: int = 600,
) -> Run:
    rate = 1000.0
    run = Run("transactional", rate, 1400.0, float(seconds))
    for t in range(seconds):
        late = t >= seconds - 60
        run.samples.append(
            Sample(
                float(t),
                int(t * rate),
                int(lag * rate),
                rss_end if late else 300.0,
                fds_end if late else 40,
                12.0,
            )
        )
        ms = p99_late if late else 50.0
        run.latencies.extend((t + i / 10, ms if i == 9 else 10.0) for i in range(10))
    return run


@pytest.mark.parametrize(
    ("fault", "failing"),
    [
        ({}, set()),
        ({"lag": 2.5}, {"lag"}),
        ({"p99_late": 80.0}, {"p99"}),
        ({"rss_end": 340.0}, {"rss"}),
        ({"fds_end": 45}, {"fds"}),
        ({"fds_end": 44}, set()),  # a reconnect's worth of slack
        ({"seconds": 150}, {"rss", "fds"}),  # too short to judge growth after 2 min
    ],
)
def test_each_criterion_fails_on_its_own_fault(fault: dict[str, float], failing: set[str]) -> None:
    verdict = judge(_run(**fault))  # type: ignore[arg-type]
    assert {name for name, c in verdict.items() if not c["ok"]} == failing


def test_p99_windows_are_ten_seconds() -> None:
    windows = _run(seconds=30).windows()
    assert [w for w, _ in windows] == [0, 10, 20]
    assert all(p99 == 50.0 for _, p99 in windows)


def test_endless_stream_keeps_replay_memory_bounded() -> None:
    sim = AgentSimulator(customers=20, seed=1, replay_memory=100)
    stream = sim.endless()
    ids = [next(stream).event for _ in range(5000)]
    assert len(sim._history) <= 200
    assert len({e.event_id for e in ids if e is not None}) > 4000  # mostly new events
