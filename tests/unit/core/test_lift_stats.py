"""Lift statistics for `tower report`: Wilson, Newcombe, Student-t, Welch and the verdict."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipeline.core.lift_stats import (
    HELPS,
    HURTS,
    UNKNOWN,
    Interval,
    Moments,
    customers_needed,
    moments,
    newcombe,
    t_quantile,
    verdict,
    welch,
    wilson,
)

CONFIDENCES = st.sampled_from([0.8, 0.9, 0.95, 0.99])


# --- moments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], Moments(n=0, mean=0.0, variance=0.0)),
        ([4.0], Moments(n=1, mean=4.0, variance=0.0)),
        ([1.0, 3.0], Moments(n=2, mean=2.0, variance=2.0)),
        ([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], Moments(n=8, mean=5.0, variance=32.0 / 7.0)),
    ],
)
def test_moments_table(values: list[float], expected: Moments) -> None:
    got = moments(values)
    assert got.n == expected.n
    assert got.mean == pytest.approx(expected.mean, abs=1e-12)
    assert got.variance == pytest.approx(expected.variance, abs=1e-12)


def test_moments_reads_an_iterator_once() -> None:
    assert moments(float(i) for i in range(1, 11)) == moments([float(i) for i in range(1, 11)])


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=60))
def test_moments_match_statistics(values: list[float]) -> None:
    got = moments(values)
    assert got.n == len(values)
    scale = max((abs(v) for v in values), default=0.0) + 1.0
    if values:
        assert math.isclose(got.mean, statistics.mean(values), rel_tol=1e-12, abs_tol=1e-12 * scale)
    if len(values) >= 2:
        assert math.isclose(
            got.variance, statistics.variance(values), rel_tol=1e-9, abs_tol=1e-12 * scale**2
        )
    else:
        assert got.variance == 0.0


# --- Wilson ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Checked against (2np + z^2 -+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2)), z = 1.959964.
        (81, 263, 0.2553, 0.3662),
        (56, 70, 0.6918, 0.8770),  # the two arms of Newcombe's example (a)
        (48, 80, 0.4905, 0.7004),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_table(successes: int, n: int, low: float, high: float) -> None:
    got_low, got_high = wilson(successes, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_wilson_closed_form() -> None:
    z = statistics.NormalDist().inv_cdf(0.975)
    n, x = 263, 81
    p = x / n
    root = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    expected = (
        (2 * n * p + z * z - root) / (2 * (n + z * z)),
        (2 * n * p + z * z + root) / (2 * (n + z * z)),
    )
    assert wilson(x, n) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(1, 0, 0.95), (-1, 10, 0.95), (11, 10, 0.95), (5, 10, 0.0), (5, 10, 1.0)],
)
def test_wilson_rejects_bad_input(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson(successes, n, confidence)


@given(
    st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), CONFIDENCES
)
def test_wilson_contains_the_proportion(xn: tuple[int, int], confidence: float) -> None:
    x, n = xn
    low, high = wilson(x, n, confidence)
    assert 0.0 <= low <= x / n <= high <= 1.0


# --- Newcombe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_t", "n_t", "x_c", "n_c", "estimate", "low", "high"),
    [
        # Newcombe (1998), Stat Med 17:873, Table II, method 10.
        (56, 70, 48, 80, 0.2, 0.0524, 0.3339),  # example (a)
        (9, 10, 3, 10, 0.6, 0.1705, 0.8090),  # example (b)
    ],
)
def test_newcombe_published_examples(
    x_t: int, n_t: int, x_c: int, n_c: int, estimate: float, low: float, high: float
) -> None:
    got = newcombe(x_t, n_t, x_c, n_c)
    assert got is not None
    assert got.estimate == pytest.approx(estimate, abs=1e-12)
    assert got.low == pytest.approx(low, abs=1e-4)
    assert got.high == pytest.approx(high, abs=1e-4)


def test_newcombe_formula() -> None:
    p_t, p_c = 56 / 70, 48 / 80
    l_t, u_t = wilson(56, 70)
    l_c, u_c = wilson(48, 80)
    got = newcombe(56, 70, 48, 80)
    assert got is not None
    d = p_t - p_c
    assert got.estimate == pytest.approx(d, abs=1e-15)
    assert got.low == pytest.approx(d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2), abs=1e-15)
    assert got.high == pytest.approx(d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2), abs=1e-15)


@pytest.mark.parametrize(("n_t", "n_c"), [(0, 10), (10, 0), (0, 0)])
def test_newcombe_needs_both_arms(n_t: int, n_c: int) -> None:
    assert newcombe(0, n_t, 0, n_c) is None


ARM = st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(ARM, ARM, CONFIDENCES)
def test_newcombe_properties(
    treatment: tuple[int, int], control: tuple[int, int], confidence: float
) -> None:
    (x_t, n_t), (x_c, n_c) = treatment, control
    got = newcombe(x_t, n_t, x_c, n_c, confidence)
    assert got is not None
    assert -1.0 <= got.low <= got.estimate <= got.high <= 1.0
    swapped = newcombe(x_c, n_c, x_t, n_t, confidence)
    assert swapped is not None
    assert swapped.estimate == pytest.approx(-got.estimate, abs=1e-12)
    assert swapped.low == pytest.approx(-got.high, abs=1e-12)
    assert swapped.high == pytest.approx(-got.low, abs=1e-12)


# --- Student t ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected", "tolerance"),
    [
        # Printed t tables, 0.975 quantile, 4 decimals. The Cornish-Fisher expansion is 3.8e-3
        # short at df 3 and 2.7e-4 at df 5; from df 10 it is within 1e-5, so the tolerance is
        # the table's rounding (5e-5) plus margin.
        (3, 3.1824, 5e-3),
        (5, 2.5706, 5e-4),
        (10, 2.2281, 1e-4),
        (30, 2.0423, 1e-4),
        (120, 1.9799, 1e-4),
    ],
)
def test_t_quantile_table(df: float, expected: float, tolerance: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize(
    ("p", "df", "expected", "tolerance"),
    [
        (0.95, 10, 1.8125, 1e-4),
        (0.995, 10, 3.1693, 2e-4),
        (0.9, 20, 1.3253, 1e-4),
        (0.99, 60, 2.3901, 1e-4),
    ],
)
def test_t_quantile_other_levels(p: float, df: float, expected: float, tolerance: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=tolerance)


def test_t_quantile_becomes_normal() -> None:
    z = statistics.NormalDist().inv_cdf(0.975)
    assert t_quantile(0.975, 2e6) == z
    assert t_quantile(0.975, math.inf) == z
    assert t_quantile(0.975, 1e5) == pytest.approx(z, abs=1e-4)
    assert t_quantile(0.5, 7.3) == 0.0


@pytest.mark.parametrize(("p", "df"), [(0.0, 5), (1.0, 5), (0.975, 0.0), (0.975, -1.0)])
def test_t_quantile_rejects_bad_input(p: float, df: float) -> None:
    with pytest.raises(ValueError):
        t_quantile(p, df)


@given(st.floats(0.5, 0.9995), st.floats(1.0, 1e7))
def test_t_quantile_symmetric_and_beyond_z(p: float, df: float) -> None:
    upper = t_quantile(p, df)
    assert t_quantile(1.0 - p, df) == pytest.approx(-upper, abs=1e-9)
    assert upper >= statistics.NormalDist().inv_cdf(p) - 1e-12


@given(st.floats(0.5, 0.999), st.floats(0.5, 0.999), st.floats(1.0, 1e4))
def test_t_quantile_increases_with_p(p1: float, p2: float, df: float) -> None:
    assume(p1 < p2)
    assert t_quantile(p1, df) <= t_quantile(p2, df)


# --- Welch -------------------------------------------------------------------------------


def test_welch_hand_computed() -> None:
    # t: mean 13.5, variance 17.5/5 = 3.5; c: mean 10, variance 10/4 = 2.5.
    treatment = [12.0, 15.0, 11.0, 14.0, 13.0, 16.0]
    control = [10.0, 9.0, 12.0, 8.0, 11.0]
    a = Fraction(35, 10) / 6
    b = Fraction(25, 10) / 5
    df = (a + b) ** 2 / (a**2 / 5 + b**2 / 4)
    assert df == Fraction(845, 94)  # about 8.99
    t_exact = 2.2625653  # qt(0.975, 845/94); the expansion is ~1e-5 short at this df
    half = t_exact * math.sqrt(a + b)
    got = welch(moments(treatment), moments(control))
    assert got is not None
    assert got.estimate == pytest.approx(3.5, abs=1e-12)
    assert got.low == pytest.approx(3.5 - half, abs=1e-4)
    assert got.high == pytest.approx(3.5 + half, abs=1e-4)
    assert (round(got.low, 3), round(got.high, 3)) == (1.145, 5.855)


def test_welch_equal_spread_uses_pooled_df() -> None:
    # Equal n and variance: df = 2(n-1) = 8, tabulated t = 2.3060; se = sqrt(10/5 + 10/5) = 2.
    got = welch(moments([5.0, 7.0, 9.0, 11.0, 13.0]), moments([1.0, 3.0, 5.0, 7.0, 9.0]))
    assert got is not None
    assert got.estimate == pytest.approx(4.0)
    assert got.low == pytest.approx(4.0 - 2.3060 * 2.0, abs=2e-4)
    assert got.high == pytest.approx(4.0 + 2.3060 * 2.0, abs=2e-4)


def test_welch_one_constant_arm_takes_the_other_arms_df() -> None:
    # Control has no spread: df = n_t - 1 = 9, t(0.975, 9) = 2.2622.
    treatment = moments([float(v) for v in range(10)])  # mean 4.5, variance 55/6
    got = welch(treatment, Moments(n=50, mean=1.0, variance=0.0))
    assert got is not None
    half = 2.2622 * math.sqrt(55 / 6 / 10)
    assert got.low == pytest.approx(3.5 - half, abs=2e-4)
    assert got.high == pytest.approx(3.5 + half, abs=2e-4)


def test_welch_zero_variance_is_a_point() -> None:
    got = welch(Moments(n=5, mean=2.0, variance=0.0), Moments(n=3, mean=1.5, variance=0.0))
    assert got == Interval(estimate=0.5, low=0.5, high=0.5)


@pytest.mark.parametrize(("n_t", "n_c"), [(1, 10), (10, 1), (0, 0)])
def test_welch_needs_two_values_per_arm(n_t: int, n_c: int) -> None:
    assert welch(Moments(n_t, 1.0, 0.0), Moments(n_c, 2.0, 0.0)) is None


def test_welch_tiny_variances_do_not_underflow() -> None:
    # (1e-300 / 10)^2 underflows to 0: the df must not come out as 0/0.
    tiny = Moments(n=10, mean=0.0, variance=1e-300)
    got = welch(tiny, Moments(n=10, mean=0.0, variance=4e-300))
    assert got is not None
    assert got.low < 0.0 < got.high
    assert got.high == pytest.approx(t_quantile(0.975, 9 * 25 / 17) * math.sqrt(5e-301))


VALUES = st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=40)


@given(VALUES, VALUES, CONFIDENCES)
def test_welch_properties(treatment: list[float], control: list[float], confidence: float) -> None:
    m_t, m_c = moments(treatment), moments(control)
    got = welch(m_t, m_c, confidence)
    assert got is not None
    assert got.low <= got.estimate <= got.high
    swapped = welch(m_c, m_t, confidence)
    assert swapped is not None
    tol = 1e-9 * (abs(got.high) + abs(got.low) + 1.0)
    assert swapped.estimate == pytest.approx(-got.estimate, abs=tol)
    assert swapped.low == pytest.approx(-got.high, abs=tol)
    assert swapped.high == pytest.approx(-got.low, abs=tol)


# --- verdict -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "higher_is_better", "expected"),
    [
        (Interval(0.2, 0.05, 0.33), True, HELPS),
        (Interval(0.2, 0.05, 0.33), False, HURTS),
        (Interval(-0.2, -0.33, -0.05), True, HURTS),
        (Interval(-0.2, -0.33, -0.05), False, HELPS),
        (Interval(0.1, -0.01, 0.2), True, UNKNOWN),
        (Interval(0.1, 0.0, 0.2), True, UNKNOWN),  # touching 0 is not "entirely" on one side
        (Interval(0.0, 0.0, 0.0), False, UNKNOWN),
        (Interval(0.5, 0.5, 0.5), True, HELPS),
        (None, True, UNKNOWN),
        (None, False, UNKNOWN),
    ],
)
def test_verdict_table(interval: Interval | None, higher_is_better: bool, expected: str) -> None:
    assert verdict(interval, higher_is_better) == expected


def test_verdict_on_newcombe_example() -> None:
    assert verdict(newcombe(56, 70, 48, 80), higher_is_better=True) == HELPS
    assert verdict(newcombe(56, 70, 48, 80), higher_is_better=False) == HURTS
    assert verdict(newcombe(30, 70, 33, 80), higher_is_better=True) == UNKNOWN


BOUNDS = st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3).map(sorted)


@given(BOUNDS, st.booleans())
def test_verdict_properties(bounds: list[float], higher_is_better: bool) -> None:
    low, estimate, high = bounds
    interval = Interval(estimate=estimate, low=low, high=high)
    got = verdict(interval, higher_is_better)
    if low <= 0.0 <= high:
        assert got == UNKNOWN
    else:
        assert got in (HELPS, HURTS)
        assert verdict(interval, not higher_is_better) == (HURTS if got == HELPS else HELPS)
        mirrored = Interval(estimate=-estimate, low=-high, high=-low)
        assert verdict(mirrored, higher_is_better) != got


@pytest.mark.parametrize(
    ("p_t", "p_c", "n_t", "n_c", "needed"),
    [
        (0.12, 0.10, 100, 100, 1779),  # 1.96^2 * (0.1056 + 0.09) / 0.02^2 = 1878.6 per arm
        (0.12, 0.10, 2000, 1500, 379),  # less the smaller arm
        (0.12, 0.10, 5000, 5000, 1),  # enough already: the interval just needs a new draw
        (0.10, 0.10, 50, 50, 0),  # no difference to tell
        (0.5, 0.5000001, 10, 10, 0),  # more than anyone can collect
        (None, 0.1, 0, 10, None),
    ],
)
def test_customers_needed_to_tell(p_t, p_c, n_t, n_c, needed):
    assert customers_needed(p_t, p_c, n_t, n_c) == needed
