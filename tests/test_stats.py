"""The intervals cover what they claim and the paired test neither misses a planted difference nor
raises false alarms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from multvae.stats import bootstrap_ci, detectable_difference, holm, paired_difference


@pytest.mark.slow
def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    repetitions, covered = 400, 0
    for i in range(repetitions):
        values = rng.normal(0.4, 0.2, size=150)
        low, high = bootstrap_ci(values, samples=1000, confidence=0.95, seed=i)
        covered += low <= 0.4 <= high
    # A 90% interval covers ~0.90 and fails; the percentile bootstrap at n=150 covers ~0.94.
    assert 0.92 <= covered / repetitions <= 0.98


def test_bootstrap_interval_has_the_normal_width_on_a_large_sample():
    values = np.random.default_rng(2).normal(0.3, 1.0, size=20_000)
    low, high = bootstrap_ci(values, samples=2000, confidence=0.95, seed=0)
    assert low < 0.3 < high
    expected = 2 * 1.959964 * values.std(ddof=1) / np.sqrt(values.size)
    assert high - low == pytest.approx(expected, rel=0.08)
    low90, high90 = bootstrap_ci(values, samples=2000, confidence=0.90, seed=0)
    assert low < low90 < high90 < high


def test_bootstrap_is_seeded_and_constant_input_gives_a_point():
    values = np.random.default_rng(3).random(500)
    assert bootstrap_ci(values, 500, 0.95, seed=7) == bootstrap_ci(values, 500, 0.95, seed=7)
    assert bootstrap_ci(values, 500, 0.95, seed=7) != bootstrap_ci(values, 500, 0.95, seed=8)
    assert bootstrap_ci(np.full(300, 0.1), 500, 0.95, seed=0) == (0.1, 0.1)


@pytest.mark.parametrize("values", [[], [0.1, np.nan], [0.2, np.inf]])
def test_bootstrap_rejects_empty_or_non_finite_values(values):
    with pytest.raises(ValueError):
        bootstrap_ci(values, 500, 0.95, seed=0)


def test_a_system_does_not_differ_from_itself():
    a = np.random.default_rng(4).random(1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_difference(a, a.copy(), samples=1000, confidence=0.95, seed=0)
    assert result == {"mean_diff": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_a_constant_shift_is_certain_without_warnings():
    a = np.random.default_rng(5).random(200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_difference(a + 0.5, a, samples=500, confidence=0.95, seed=0)
    assert result["p_value"] == 0.0
    assert result["low"] == pytest.approx(0.5) and result["high"] == pytest.approx(0.5)


def test_a_planted_difference_is_found():
    rng = np.random.default_rng(6)
    base = rng.random(2000)
    better = base + 0.02 + rng.normal(0, 0.1, size=base.size)
    result = paired_difference(better, base, samples=2000, confidence=0.95, seed=0)
    assert result["p_value"] < 1e-6
    assert 0 < result["low"] < 0.02 < result["high"]
    assert result["mean_diff"] == pytest.approx(np.mean(better - base))
    worse = paired_difference(base, better, samples=2000, confidence=0.95, seed=0)
    assert worse["high"] < 0 and worse["p_value"] == pytest.approx(result["p_value"])


def test_no_false_alarm_between_two_draws_of_the_same_system():
    rng = np.random.default_rng(7)
    repetitions, alarms, excluded = 200, 0, 0
    for i in range(repetitions):
        a, b = rng.beta(2, 5, size=300), rng.beta(2, 5, size=300)
        result = paired_difference(a, b, samples=500, confidence=0.95, seed=i)
        alarms += result["p_value"] < 0.05
        excluded += not result["low"] <= 0 <= result["high"]
    assert alarms / repetitions <= 0.09
    assert excluded / repetitions <= 0.09


def test_paired_difference_needs_the_same_users():
    with pytest.raises(ValueError, match="length"):
        paired_difference([0.1, 0.2, 0.3], [0.1, 0.2], samples=500, confidence=0.95, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([0.1], [0.2], samples=500, confidence=0.95, seed=0)


def test_scipy_percentile_bootstrap_agrees_with_a_direct_resampling():
    values = np.random.default_rng(7).beta(2, 5, size=600)
    low, high = bootstrap_ci(values, samples=4000, confidence=0.95, seed=0)
    rng = np.random.default_rng(1)
    means = values[rng.integers(0, values.size, size=(4000, values.size))].mean(axis=1)
    direct = np.quantile(means, [0.025, 0.975])
    assert (low, high) == pytest.approx(tuple(direct), abs=0.002)  # Monte Carlo error of the bounds


def test_holm_matches_a_hand_computation():
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> at least the previous 0.06
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_a_difference_of_the_detectable_size_is_found_about_80_percent_of_the_time():
    rng = np.random.default_rng(3)
    n, spread, alpha = 600, 0.05, 0.05 / 9
    shift = detectable_difference(rng.normal(0, spread, size=n), alpha)
    assert shift == pytest.approx(3.4 * spread / np.sqrt(n), rel=0.1)
    found = sum(
        paired_difference(base + shift + rng.normal(0, spread, n), base, samples=100, confidence=0.95,
                          seed=0)["p_value"] < alpha
        for base in (rng.random(n) for _ in range(300)))
    assert 0.72 <= found / 300 <= 0.88
