"""The Faust side of the sequence guard, without Faust or a broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.kafka.reader import ScanError
from pipeline.processing.input_positions import InputPositions
from pipeline.processing.metrics import TowerMetrics
from pipeline.runtime.faust import input_guard
from pipeline.settings import Settings

TP = ("t-agent-events", 2)


def guard_with_a_due_probe() -> input_guard.InputGuard:
    guard = input_guard.InputGuard(None, None, TowerMetrics(), Settings())  # type: ignore[arg-type]
    guard.positions = InputPositions(reseek_after_s=0.0)  # the broker is asked at once
    now = time.monotonic()
    guard.positions.load(TP, 10, now, delivered=14)  # records 10..13 not delivered
    assert guard.positions.seeks_due(now) == [(TP, 10)]
    return guard


def test_a_probe_the_brokers_cannot_answer_stays_due_and_the_worker_keeps_running(monkeypatch):
    def all_brokers_down(*args):
        raise ScanError("cannot read t-agent-events partition 2: _ALL_BROKERS_DOWN")

    monkeypatch.setattr(input_guard, "first_record_at", all_brokers_down)
    guard = guard_with_a_due_probe()
    asyncio.run(guard.probe_holes())  # no exception: a timer's exception stops the app
    assert guard.positions.probes_due(time.monotonic()) == [(TP, 10)]
    assert guard.positions.next_offset(TP) == 10


@pytest.mark.parametrize(("first", "end", "next_offset"), [(None, 12, 12), (13, 20, 13)])
def test_the_brokers_answer_moves_the_position_over_offsets_without_records(
    monkeypatch, first, end, next_offset
):
    monkeypatch.setattr(input_guard, "first_record_at", lambda *args: (first, end))
    guard = guard_with_a_due_probe()
    asyncio.run(guard.probe_holes())
    assert guard.positions.next_offset(TP) == next_offset
