"""Uncertainty over test users: bootstrap intervals of a mean and paired comparisons of two systems.

Test users are the sampling unit: a rerun on another draw of users is what a reader would do, so
both intervals resample users. All systems are scored on the same users, so their comparison is
paired: per-user differences cancel the large between-user spread that separate intervals include.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

# Resampled index block kept below ~64 MB of int64, whatever the number of users.
_CHUNK_ELEMENTS = 8_000_000
# Spread of differences below this is float rounding, not a signal (metrics lie in [0, 1]).
_ROUNDING = 1e-12


class PairedDifference(TypedDict):
    mean_diff: float
    low: float
    high: float
    p_value: float


def _as_values(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name}: no values")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _check_level(samples: int, confidence: float) -> None:
    if samples < 1:
        raise ValueError(f"samples: expected at least 1, got {samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")


def bootstrap_ci(values: npt.ArrayLike, samples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy.stats.bootstrap).

    The resamples depend only on (number of values, seed), so systems scored on the same users with
    the same seed see the same resamples. The bounds are clipped to the data's range, which they can
    only leave by rounding, so constant input gives exactly [c, c].
    """
    array = _as_values(values, "values")
    _check_level(samples, confidence)
    lo, hi = float(array.min()), float(array.max())
    if lo == hi:  # scipy warns on a degenerate distribution; the interval is the point
        return lo, hi
    result = sps.bootstrap((array,), np.mean, n_resamples=samples, confidence_level=confidence,
                           method="percentile", vectorized=True, rng=np.random.default_rng(seed),
                           batch=max(1, _CHUNK_ELEMENTS // array.size))
    low, high = result.confidence_interval
    return float(np.clip(low, lo, hi)), float(np.clip(high, lo, hi))


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


def detectable_difference(differences: npt.ArrayLike, alpha: float, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired test at level `alpha` finds with
    probability `power`, given the per-user differences' spread (normal approximation)."""
    d = _as_values(differences, "differences")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * d.std(ddof=1) / np.sqrt(d.size))


def paired_difference(a: npt.ArrayLike, b: npt.ArrayLike, samples: int, confidence: float,
                      seed: int) -> PairedDifference:
    """Mean of a − b over the same users, its bootstrap interval, and a two-sided paired t-test.

    The t-test (scipy.stats.ttest_rel) rather than a sign-flip permutation test: with the hundreds
    to thousands of test users of this study the mean difference is close to normal, so its p-value
    is accurate; it is deterministic (independent of the bootstrap seed and sample count) and
    resolves p-values far below 1/samples. On IR metrics it agrees closely with randomisation tests
    (Smucker et al., CIKM 2007; Urbano et al., SIGIR 2019).
    Differences that are constant up to rounding are decided directly, where the t statistic is
    0/0 or x/0 (and scipy warns): all zero gives p = 1, a constant non-zero shift gives p = 0.
    """
    x = _as_values(a, "a")
    y = _as_values(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired values differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        raise ValueError("a paired test needs at least 2 users")
    diff = x - y
    low, high = bootstrap_ci(diff, samples, confidence, seed)
    if np.ptp(diff) <= _ROUNDING * max(1.0, float(np.abs(diff).max())):
        p_value = 1.0 if abs(diff.mean()) <= _ROUNDING else 0.0
    else:
        p_value = float(sps.ttest_rel(x, y).pvalue)
    return PairedDifference(mean_diff=float(diff.mean()), low=low, high=high, p_value=p_value)
