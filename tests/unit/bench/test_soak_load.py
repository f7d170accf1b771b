"""The soak-load verdict: each criterion passes on a steady run and fails on its own fault."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.common import tower_settings
from bench.soak_load import (
    Run,
    Sample,
    _per_input,
    changelog_bytes,
    judge,
    keeps_up,
    stolen,
)
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


@pytest.mark.parametrize(
    ("fds", "ok"),
    [
        (lambda t: 95 + (t * 7) % 18, True),  # RocksDB's files through compactions: a swing
        (lambda t: 95 + (t * 7) % 18 + t // 20, False),  # the same plus one leaked per 20 s
        (lambda t: 95 + t // 60, False),  # one per minute: 8 more by the last minute
    ],
)
def test_descriptors_are_flat_when_they_swing_but_not_when_they_climb(fds, ok) -> None:
    run = _run()
    run.samples = [replace(s, fds=fds(int(s.t))) for s in run.samples]
    assert judge(run)["fds"]["ok"] is ok


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


@pytest.mark.parametrize(
    ("before", "after", "held"),
    [
        (0, 900, True),  # under a second of lag at 1,000/s, as it started
        (400, 1_300, True),  # 0.9 s gained over the step, 1.3 s behind
        (0, 1_600, False),  # 1.6 s behind at the end of the step
        (200, 1_300, False),  # 1.1 s gained: falling behind
    ],
)
def test_a_ramp_step_holds_with_little_lag_and_little_gain(before, after, held) -> None:
    assert keeps_up(before, after, 1000.0) is held


def test_bytes_per_input_count_the_workers_own_output_topics_by_kind(tmp_path):
    settings = tower_settings("127.0.0.1:1", "t1", 4, tmp_path)
    t = settings.topics
    delta = {
        t.events: 9_000,  # the input: not the worker's writes
        t.audit: 2_000,
        t.approved: 500,
        t.wakeups: 100,
        f"{settings.app_id}-customer-state-changelog": 3_000,
        "__consumer_offsets": 700,
        "bench-t2-audit": 8_000,  # another run's
    }
    assert _per_input(delta, settings, 10) == {
        "audit": 200.0,
        "approved": 50.0,
        "wakeups": 10.0,
        "changelog": 300.0,
        "total": 560.0,
    }


def test_changelog_bytes_are_offsets_written_times_the_active_segments_bytes_per_offset(
    tmp_path,
):
    def segments(partition: int, *sizes_by_base: tuple[int, int]) -> None:
        part = tmp_path / f"t1-customer-state-changelog-{partition}"
        part.mkdir()
        for base, size in sizes_by_base:
            (part / f"{base:020d}.log").write_bytes(b"x" * size)

    # partition 0: a rolled segment the cleaner shrank, then 2,000 offsets in 200,000 B
    segments(0, (0, 1_000), (8_000, 200_000))
    # partition 1: its active segment just rolled (too few offsets to count)
    segments(1, (0, 500_000), (9_990, 300))
    after = {0: 10_000, 1: 10_000}
    before = {0: 6_000, 1: 7_000}
    # 7,000 offsets written at 100 B each (partition 0's active segment)
    assert changelog_bytes(tmp_path, "t1-customer-state-changelog", before, after) == 700_000
    assert changelog_bytes(tmp_path, "t1-customer-state-changelog", after, after) == 0


def test_stolen_cpu_is_counted_and_the_lag_it_causes_is_set_apart() -> None:
    run = _run()
    for s in run.samples:
        if 300 <= s.t < 310:  # other guests take most of a core, and lag follows
            s.steal_cores = 0.8
        if 300 <= s.t < 320:
            s.lag_records = 4_000
    steal = stolen(run)
    assert steal["seconds"] == 10
    assert steal["max_cores"] == 0.8
    assert steal["max_lag_s_away_from_it"] == pytest.approx(0.2)
    assert not judge(run)["lag"]["ok"]  # a note, not an excuse: the criterion still fails
