"""The latency harness keeps the settling seconds out of the measured percentiles."""

from __future__ import annotations

from bench.throughput import _drift, split_at


def test_inputs_before_the_steady_window_are_settling_the_rest_measured():
    samples = [(0.0, 900.0), (4.9, 300.0), (5.0, 40.0), (9.0, 30.0)]
    assert split_at(samples, 5.0) == ([900.0, 300.0], [40.0, 30.0])


def test_no_settle_measures_every_sample():
    samples = [(0.0, 900.0), (1.0, 40.0)]
    assert split_at(samples, 0.0) == ([], [900.0, 40.0])


def test_drift_compares_the_first_and_last_quarter_by_input_time():
    steady = [(float(t), 30.0) for t in range(8)]
    rising = [(float(t), 10.0 * t) for t in range(8)]
    assert _drift(steady) == (30.0, 30.0)
    assert _drift(list(reversed(rising))) == (5.0, 65.0)
