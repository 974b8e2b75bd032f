"""The intervals and tests count users and training runs: under the null the nominal 5% test rejects
about 5% of the time (measured, with its Monte-Carlo error), where the users-only test that this
project used before rejects far more often; planted differences are found; Holm is Holm."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from multvae.stats import holm, mean_estimate, paired_difference

# A study like the ML-1M one: 600 test users, 3 seeds, per-user values spread like NDCG@100, and
# the across-seed SD of a run's mean at the top of what the ML-1M table shows (0.0004-0.0031).
USERS, SEEDS, SEED_SD = 600, 3, 0.003


def simulate(rng: np.random.Generator, shift: float = 0.0, users: int = USERS, seeds: int = SEEDS,
             seed_sd: float = SEED_SD, folds: int = 1) -> tuple[dict, dict]:
    """Two systems on the same users: a shared user effect, each system's own user effect, a shift
    per training run (fold × seed), and user × run noise."""
    a: dict[int, np.ndarray] = {}
    b: dict[int, np.ndarray] = {}
    per_fold = users // folds
    for fold in range(folds):
        user = rng.normal(0.4, 0.2, (per_fold, 1))
        for runs, extra in ((a, shift), (b, 0.0)):
            runs[fold] = (user + extra + rng.normal(0, 0.02, (per_fold, 1))
                          + rng.normal(0, seed_sd, (1, seeds)) + rng.normal(0, 0.03, (per_fold, seeds)))
    return a, b


def users_only_p(a: dict, b: dict) -> float:
    """The former test: a paired t-test over users of seed-averaged values, pooled over folds."""
    x = np.concatenate([a[f].mean(axis=1) for f in sorted(a)])
    y = np.concatenate([b[f].mean(axis=1) for f in sorted(b)])
    return float(sps.ttest_rel(x, y).pvalue)


def rejection_rates(reps: int, **design) -> tuple[float, float, float]:
    rng = np.random.default_rng(2026)
    new = old = 0
    for _ in range(reps):
        a, b = simulate(rng, **design)
        new += paired_difference(a, b, 0.95).p_value < 0.05
        old += users_only_p(a, b) < 0.05
    rate = new / reps
    return rate, float(np.sqrt(0.05 * 0.95 / reps)), old / reps


@pytest.mark.parametrize("design", [{}, {"seeds": 1, "folds": 10}],
                         ids=["3 seeds, one split", "10 folds, 1 seed"])
def test_under_the_null_the_5_percent_test_rejects_about_5_percent(design):
    reps = 3000
    rate, mc_error, old = rejection_rates(reps, **design)
    print(f"{design or 'one split, 3 seeds'}: rejection rate {rate:.4f} ± {mc_error:.4f} (Monte-Carlo SE), "
          f"users-only test {old:.4f}")
    assert abs(rate - 0.05) < 4 * mc_error, (rate, mc_error)  # 4 SE: a false failure about 1 in 15,000
    # The users-only test leaves the runs' shift out of its error: it rejects well above 5%.
    assert old > 0.05 + 8 * mc_error, old


def test_the_estimated_variance_matches_the_spread_of_the_estimate():
    rng = np.random.default_rng(11)
    found = [paired_difference(*simulate(rng), 0.95) for _ in range(1500)]
    means = np.array([e.mean for e in found])
    ratio = np.mean([e.se**2 for e in found]) / means.var(ddof=1)
    assert 0.85 < ratio < 1.2, ratio  # Monte-Carlo error of a variance over 1,500 draws: about 4%


def test_a_baselines_interval_covers_its_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(1000):
        values = rng.beta(2, 5, (300, 1))
        est = mean_estimate({0: values}, 0.95, stochastic=False)
        covered += est.low <= 2 / 7 <= est.high
    assert 0.93 <= covered / 1000 <= 0.97


def test_one_stochastic_run_on_one_fold_is_flagged():
    values = np.random.default_rng(2).random((50, 1))
    assert not mean_estimate({0: values}, 0.95).runs_counted
    assert mean_estimate({0: values}, 0.95, stochastic=False).runs_counted
    assert mean_estimate({0: np.hstack([values, values])}, 0.95).runs_counted


def test_a_system_does_not_differ_from_itself():
    a = {0: np.random.default_rng(4).random((1000, 3))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_difference(a, {0: a[0].copy()}, 0.95)
    assert (result.mean, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_a_constant_shift_is_certain_without_warnings():
    a = np.random.default_rng(5).random((200, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_difference({0: a + 0.5}, {0: a}, 0.95, False, False)
    assert result.p_value == 0.0
    assert result.low == pytest.approx(0.5) and result.high == pytest.approx(0.5)


def test_a_planted_difference_is_found_and_the_test_is_antisymmetric():
    a, b = simulate(np.random.default_rng(6), shift=0.02)
    result = paired_difference(a, b, 0.95)
    assert result.p_value < 1e-3
    assert 0 < result.low < 0.02 < result.high
    assert result.mean == pytest.approx(a[0].mean() - b[0].mean())
    worse = paired_difference(b, a, 0.95)
    assert worse.high < 0 and worse.p_value == pytest.approx(result.p_value)


def test_the_systems_must_cover_the_same_users_and_folds():
    with pytest.raises(ValueError, match="different numbers of users"):
        paired_difference({0: np.zeros((3, 1))}, {0: np.zeros((2, 1))}, 0.95)
    with pytest.raises(ValueError, match="different folds"):
        paired_difference({0: np.zeros((3, 1))}, {1: np.zeros((3, 1))}, 0.95)
    with pytest.raises(ValueError, match="at least 2 users"):
        paired_difference({0: np.zeros((1, 1))}, {0: np.ones((1, 1))}, 0.95)
    with pytest.raises(ValueError, match="NaN"):
        mean_estimate({0: np.array([[0.1], [np.nan]])}, 0.95)


def test_holm_matches_a_hand_computation():
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> at least the previous 0.06
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_a_difference_of_the_detectable_size_is_found_about_80_percent_of_the_time():
    """Where the users dominate the error its estimate is stable; with three seeds dominating it has
    few degrees of freedom, and the detectable difference of one study is itself uncertain."""
    rng = np.random.default_rng(3)
    alpha = 0.05 / 9
    shift = np.median([paired_difference(*simulate(rng, seed_sd=0.0005), 0.95).detectable(alpha)
                       for _ in range(50)])
    found = sum(paired_difference(*simulate(rng, shift=shift, seed_sd=0.0005), 0.95).p_value < alpha
                for _ in range(400))
    assert 0.65 <= found / 400 <= 0.9, found / 400  # measured 0.70: the degrees of freedom vary by draw


def overlapping_folds(rng: np.random.Generator, shared: float, folds: int = 10,
                      per_fold: int = 60) -> tuple[dict, dict, float]:
    """Two systems under the null, folds drawn as the split draws them: fold k's users test, as
    many others drawn at random validate, the rest train; system a's model on fold k differs by the
    mean, over its training users, of a per-user effect h_u (the training data's draw), so folds
    that share training users share most of it. `shared` is the variance of that effect on the
    K-fold mean over the users' own variance of that mean. Returns a, b and n_test / n_train."""
    users = folds * per_fold
    fold_of = rng.permutation(np.arange(users) % folds)
    n_train = users - 2 * per_fold
    user_sd = 0.1
    h = rng.normal(0, np.sqrt(shared * user_sd**2 / per_fold / folds * n_train), users)
    a, b = {}, {}
    for k in range(folds):
        test = np.flatnonzero(fold_of == k)
        rest = np.flatnonzero(fold_of != k)
        train = np.setdiff1d(rest, rng.choice(rest, per_fold, replace=False))
        base = rng.normal(0.4, 0.2, (test.size, 1))
        a[k] = base + h[train].mean() + rng.normal(0, user_sd, (test.size, 1))
        b[k] = base
    return a, b, per_fold / n_train


@pytest.mark.slow
@pytest.mark.parametrize("shared", [0.0, 0.5, 1.0, 2.0])
def test_overlapping_folds_the_corrected_test_keeps_its_size(shared):
    """Nadeau and Bengio's factor keeps the 5% test's size at most about 6% (below 5% until the
    shared effect passes the users' variance) while the training data's shared effect is up to twice
    the users' variance of the K-fold mean; the uncorrected spread of the folds rejects more and
    more often as that effect grows. Past that, no interval from one data set can tell."""
    rng = np.random.default_rng(31)
    reps = 2000
    corrected = naive = 0
    for _ in range(reps):
        a, b, ratio = overlapping_folds(rng, shared)
        corrected += paired_difference(a, b, 0.95, test_to_train=ratio).p_value < 0.05
        naive += paired_difference(a, b, 0.95).p_value < 0.05
    mc_error = np.sqrt(0.05 * 0.95 / reps)
    print(f"shared {shared}: corrected {corrected / reps:.4f}, uncorrected {naive / reps:.4f} "
          f"(± {mc_error:.4f})")
    assert corrected / reps < 0.05 + 3 * mc_error
    if shared >= 1.0:
        assert naive / reps > 0.05 + 8 * mc_error


def test_the_k_fold_correction_scales_the_variance_by_one_plus_k_times_the_ratio():
    rng = np.random.default_rng(5)
    a, b, _ = overlapping_folds(rng, 0.5)
    plain = paired_difference(a, b, 0.95)
    corrected = paired_difference(a, b, 0.95, test_to_train=0.125)
    assert corrected.mean == plain.mean and corrected.dof == plain.dof == 9
    assert corrected.se == pytest.approx(plain.se * np.sqrt(1 + 10 * 0.125))
    x, y = {0: a[0]}, {0: b[0]}  # one split: nothing to correct
    assert paired_difference(x, y, 0.95, test_to_train=0.125).se == paired_difference(x, y, 0.95).se


@pytest.mark.slow
@pytest.mark.parametrize("users, share", [(600, 0.75), (60, 0.95), (10_000, 0.75)])
def test_where_one_rows_runs_dominate_the_bounded_degrees_of_freedom_keep_the_size(users, share, monkeypatch):
    """A Mult-VAE row with 3 seeds against a deterministic baseline, where the runs make most of the
    error (benchmarks/size_grid.py's worst cells): plain Welch–Satterthwaite degrees of freedom
    reject well above 5%; with the runs' variance at its upper bound the test keeps its size."""
    import sys

    from multvae import stats

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from size_grid import size

    reps = 2000
    mc_error = np.sqrt(0.05 * 0.95 / reps)
    bounded = size(np.random.default_rng(41), reps, share, users, 3, vs_vae=False)
    monkeypatch.setattr(stats, "DOF_BOUND", None)
    plain = size(np.random.default_rng(41), reps, share, users, 3, vs_vae=False)
    print(f"{users} users, run share {share}: bounded {bounded:.4f}, plain {plain:.4f} (± {mc_error:.4f})")
    assert bounded < 0.05 + 2 * mc_error
    assert plain > 0.06
