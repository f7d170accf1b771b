"""The lag gauges and the liveness verdict, with a hand-driven clock."""

from __future__ import annotations

import pytest

from pipeline.processing.input_progress import BLOCKED, OK, STALLED, InputProgress
from pipeline.processing.metrics import TowerMetrics

EV, WK = "agent-events", "tower-wakeups"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauges(metrics: TowerMetrics) -> dict[tuple[str, str, str], float]:
    names = ("tower_input_lag_records", "tower_input_oldest_undecided_age_seconds")
    return {
        (s.name, s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name in names
    }


def progress(watchdog: bool = False) -> tuple[InputProgress, TowerMetrics, Clock]:
    metrics, clock = TowerMetrics(), Clock()
    return (
        InputProgress(metrics, 10.0, watchdog=watchdog, clock=clock, wall=lambda: 5e8),
        metrics,
        clock,
    )


def test_lag_and_age_per_partition_and_revoked_partitions_lose_their_series() -> None:
    p, metrics, clock = progress()
    p.observe({(EV, 0): (5, 5), (EV, 1): (3, 7), (WK, 1): (2, 2)})
    clock.now += 4
    p.observe({(EV, 0): (5, 5), (EV, 1): (3, 9), (WK, 1): (2, 2)})
    lag, age = "tower_input_lag_records", "tower_input_oldest_undecided_age_seconds"
    assert gauges(metrics) == {
        (lag, EV, "0"): 0, (lag, EV, "1"): 6, (lag, WK, "1"): 0,
        (age, EV, "0"): 0, (age, EV, "1"): 4, (age, WK, "1"): 0,
    }  # fmt: skip
    assert p.lag(EV) == {0: 0, 1: 6}
    # offsets 3..6 decided: the oldest waiting (7, 8) arrived at the second look
    clock.now += 1
    p.observe({(EV, 1): (7, 9)})
    assert gauges(metrics) == {(lag, EV, "1"): 2, (age, EV, "1"): 1}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (seconds later, positions (next, end) of one partition or "decided") ...
        ([(0, (0, 0)), (60, (0, 0))], OK),  # idle: no input waits
        ([(0, (0, 0)), (60, (0, 5)), (5, (0, 5))], OK),  # waiting, not yet for 10 s
        ([(0, (0, 5)), (11, (0, 5))], STALLED),  # waiting 11 s, nothing decided
        ([(0, (0, 5)), (6, (2, 8)), (6, (2, 9))], OK),  # a position advanced 6 s ago
        ([(0, (0, 5)), (6, "decided"), (6, (0, 5))], OK),  # a batch was decided 6 s ago
        ([(0, (0, 5)), (11, (0, 5)), (0, (5, 5))], OK),  # caught up again: green
    ],
)
def test_stalled_when_input_waits_and_nothing_is_decided(steps: list, expected: str) -> None:
    p, _, clock = progress()
    for later, what in steps:
        clock.now += later
        if what == "decided":
            p.decided()
        else:
            p.observe({(EV, 0): what})
    assert p.status() == expected


def test_the_watchdog_sees_a_runtime_that_stopped_reporting() -> None:
    p, metrics, clock = progress(watchdog=True)
    p.beat()
    clock.now += 9
    assert p.status() == OK
    clock.now += 2
    assert p.status() == BLOCKED
    p.decided()
    assert p.status() == OK
    assert metrics.last_decision._value.get() == 5e8
    clock.now += 60  # a long restore, then the assignment: the clock starts again
    p.assigned()
    assert p.status() == OK and metrics.rebalances._value.get() == 1


def test_process_and_gc_metrics_are_on_the_workers_registry() -> None:
    names = {s.name for f in TowerMetrics().registry.collect() for s in f.samples}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
        "python_info",
        "tower_rebalances_total",
        "tower_last_decision_timestamp_seconds",
    } <= names
