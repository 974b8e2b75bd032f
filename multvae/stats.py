"""Uncertainty over test users **and** training runs: intervals of a mean, paired differences, Holm.

A rerun would draw other test users and train other models, so both are sampling units. One
system's results are, per fold, a users × seeds matrix of a metric. A paired difference of two
systems on one fold has three sources of error, estimated by the method of moments of a crossed
random-effects model (users × training runs):
  - users: the spread over users of the difference of their seed-averaged values, over n;
  - each system's training runs: the spread of its run means over seeds, less the user × run
    noise already counted in the user term, over S (absent for a deterministic baseline);
and the test refers the difference to Student's t with Welch–Satterthwaite degrees of freedom, so
three seeds (two degrees of freedom for the run term) widen the interval as they should.

Under K-fold each fold has its own models (one pair per fold), and the error starts from the
spread of the per-fold results (a cluster-robust variance with K − 1 degrees of freedom), which
holds the users and the runs of each fold. The folds are not independent, though: any two share
(K − 2)/(K − 1) of their training users, so their models' errors are correlated and that spread
misses most of what another draw of training data would change. Nadeau and Bengio's correction
(Machine Learning 52, 2003) scales the variance of the mean by (1/K + n_test/n_train)/(1/K), that
is 1 + K·n_test/n_train (about 2.25 for ML-1M's ten folds); the null simulation in
tests/test_stats.py draws folds that share training users and measures the size it gives.

Chosen over a two-level bootstrap: with three seeds a bootstrap can draw only ten multisets of runs
and shrinks their variance by (S − 1)/S; the t reference with few degrees of freedom does not. The
null simulation in tests/test_stats.py measures the test's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps
from scipy.optimize import brentq

# Spread of differences below this is float rounding, not a signal (metrics lie in [0, 1]).
_ROUNDING = 1e-12

Runs = Mapping[int, np.ndarray]  # fold -> (users × seeds) values, users in the same order in every system


@dataclass(frozen=True)
class Estimate:
    """A mean (or a difference of means) with its standard error and t reference."""

    mean: float
    se: float
    dof: float
    low: float
    high: float
    p_value: float  # two-sided, against 0
    runs_counted: bool  # False: a stochastic system trained once on one fold, its run noise unknown

    def detectable(self, alpha: float, power: float = 0.8) -> float:
        """The smallest true difference a two-sided test at `alpha` finds with probability `power`,
        given this estimate's standard error and degrees of freedom: the noncentrality at which the
        t statistic passes the critical value that often (with few degrees of freedom the normal
        shortcut, critical value plus the power's quantile, would promise more power than there is)."""
        if self.se == 0.0:
            return 0.0
        critical = sps.t.ppf(1 - alpha / 2, self.dof)

        def shortfall(delta: float) -> float:
            # The far tail is negligible, and scipy's nct.cdf returns NaN for some of its values.
            wrong_way = float(np.nan_to_num(sps.nct.cdf(-critical, self.dof, delta), nan=0.0))
            return float(sps.nct.sf(critical, self.dof, delta)) + wrong_way - power

        upper = critical + 1.0
        while shortfall(upper) < 0:  # nct is finite well past any bound this needs
            upper *= 2
        return float(brentq(shortfall, 0.0, upper) * self.se)


@dataclass(frozen=True)
class Part:
    """One system's runs in a mean or difference: its sign, its values, and whether a rerun would
    train it again (a Mult-VAE) or give the same numbers (a baseline)."""

    sign: float
    runs: Runs
    stochastic: bool


def _check(parts: list[Part]) -> list[int]:
    folds = sorted(parts[0].runs)
    if not folds:
        raise ValueError("no folds")
    for part in parts:
        if sorted(part.runs) != folds:
            raise ValueError(f"the systems cover different folds: {sorted(part.runs)} vs {folds}")
        for fold in folds:
            m = part.runs[fold]
            if m.ndim != 2 or m.shape[1] < 1:
                raise ValueError(f"fold {fold}: expected a users × seeds matrix, got shape {m.shape}")
            if m.shape[0] != parts[0].runs[fold].shape[0]:
                raise ValueError(f"fold {fold}: the systems hold different numbers of users")
            if not np.all(np.isfinite(m)):
                raise ValueError(f"fold {fold}: NaN or infinite values")
    return folds


# The degrees of freedom take the training runs' variance at this one-sided upper confidence
# bound (the variance itself stays the unbiased estimate): see the module's docstring. None: plain
# Welch–Satterthwaite, the former rule, which benchmarks/size_grid.py measures beside it.
DOF_BOUND: float | None = 0.8


Terms = list[tuple[float, float]]  # (variance, degrees of freedom) of independent parts


def _one_fold(parts: list[Part], fold: int) -> tuple[float, tuple[float, float], Terms, bool]:
    """Point estimate, the users' (variance, dof) and each stochastic system's runs' (variance,
    dof) on one fold."""
    n = parts[0].runs[fold].shape[0]
    if n < 2:
        raise ValueError(f"fold {fold}: at least 2 users are needed, got {n}")
    by_user = sum(p.sign * p.runs[fold].mean(axis=1) for p in parts)
    runs = []
    counted = True
    for p in parts:
        m = p.runs[fold]
        seeds = m.shape[1]
        if seeds < 2:
            counted = counted and not p.stochastic
            continue
        run_means = m.mean(axis=0)
        resid = m - m.mean(axis=1, keepdims=True) - run_means + m.mean()
        noise = float((resid**2).sum()) / ((n - 1) * (seeds - 1))  # user × run interaction
        runs.append((max(float(np.var(run_means, ddof=1)) - noise / n, 0.0) / seeds, seeds - 1.0))
    return float(by_user.mean()), (float(np.var(by_user, ddof=1)) / n, n - 1.0), runs, counted


def _satterthwaite(terms: Terms) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of (variance, dof) terms (0 if all are 0)."""
    total = sum(v for v, _ in terms)
    spread = sum(v * v / dof for v, dof in terms if v > 0)
    return total * total / spread if spread > 0 else 0.0


def _estimate(parts: list[Part], confidence: float, test_to_train: float = 0.0) -> Estimate:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    folds = _check(parts)
    if len(folds) == 1:
        mean, (user, user_dof), runs, counted = _one_fold(parts, folds[0])
        run = sum(v for v, _ in runs)
        variance = user + run
        run_dof = _satterthwaite(runs)
        if run > 0:
            upper = run if DOF_BOUND is None else run * run_dof / float(sps.chi2.ppf(1 - DOF_BOUND, run_dof))
            dof = _satterthwaite([(user, user_dof), (upper, run_dof)])
        else:
            dof = user_dof
    else:
        sizes = np.array([parts[0].runs[f].shape[0] for f in folds], dtype=np.float64)
        weights = sizes / sizes.sum()
        per_fold = np.array([sum(p.sign * p.runs[f].mean() for p in parts) for f in folds])
        mean = float(weights @ per_fold)
        k = len(folds)
        variance = float(k / (k - 1) * np.sum(weights**2 * (per_fold - mean) ** 2))
        variance *= 1.0 + k * test_to_train  # overlapping training sets (Nadeau & Bengio)
        dof, counted = k - 1.0, True
    se = float(np.sqrt(variance))
    if se <= _ROUNDING * max(1.0, abs(mean)):  # constant: decided directly (t would be 0/0 or x/0)
        p_value = 1.0 if abs(mean) <= _ROUNDING else 0.0
        return Estimate(mean, 0.0, dof, mean, mean, p_value, counted)
    half = float(sps.t.ppf((1 + confidence) / 2, dof)) * se
    p_value = float(2 * sps.t.sf(abs(mean) / se, dof))
    return Estimate(mean, se, dof, mean - half, mean + half, p_value, counted)


def mean_estimate(runs: Runs, confidence: float, stochastic: bool = True,
                  test_to_train: float = 0.0) -> Estimate:
    """A system's mean metric over its test users (and seeds), with its interval; under K-fold,
    `test_to_train` (a fold's test users over its training users) corrects for overlapping folds."""
    return _estimate([Part(1.0, runs, stochastic)], confidence, test_to_train)


def paired_difference(a: Runs, b: Runs, confidence: float, a_stochastic: bool = True,
                      b_stochastic: bool = True, test_to_train: float = 0.0) -> Estimate:
    """Mean of a − b over the same test users, each system's seeds averaged, with the interval
    and two-sided p-value that count users and both systems' training runs (and, under K-fold,
    the training data, through `test_to_train`)."""
    return _estimate([Part(1.0, a, a_stochastic), Part(-1.0, b, b_stochastic)], confidence, test_to_train)


def holm(p_values: npt.ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment: adjusted p-values that control the family-wise error rate of
    the whole set of comparisons (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out
