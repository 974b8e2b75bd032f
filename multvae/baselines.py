"""The comparison table's baselines: most-popular, EASE (Steck, WWW 2019) and RP3β (Paudel et
al., TiiS 2016), each tuned on validation with a budget the table states.

All are scorers for `metrics.score_heldout`, so they are ranked and measured exactly as Mult-VAE
is: same split, same fold-in exclusion, same metrics.

EASE's B = -P / diag(P) with P = (G + λI)⁻¹ for the Gram matrix G = XᵀX. One eigendecomposition
G = QΛQᵀ serves every λ: P = Q diag(1/(Λ + λ)) Qᵀ, so scoring the validation users at a new λ costs
two products with Q instead of a dense inversion, and the λ grid can be refined where validation
peaks at little cost. Up to FLOAT64_MAX_ITEMS items the arrays are float64; above (ML-20M's ~20k
items: half the memory) float32, which is safe: the Gram counts are exact in float32 up to 2**24
users, and the spectrum of G + λI is bounded below by the λ that EASE needs.

RP3β scores item j for user u by a three-step random walk u → i → v → j with transition
probabilities raised to α, divided by j's popularity to the power β. With X binary, the walk's
item-to-item weights are D_i^-α (Xᵀ D_u^-α X) D_j^-β (D: degrees), so one weighted Gram matrix per α
serves every β.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import eigh, lapack

from multvae.data import HeldOut
from multvae.metrics import Scorer, metric_names, score_heldout

FLOAT64_MAX_ITEMS = 10_000
GRAM_BLOCK_ENTRIES = 2**24  # dense entries per column block while building the Gram matrix
EDGE_STEPS = 4  # at most this many grid steps added past an edge of the λ grid that wins


def item_counts(train: sp.csr_matrix) -> np.ndarray:
    """Training users per item: the most-popular model, whole."""
    return np.asarray(train.sum(axis=0), dtype=np.float32).ravel()


def popularity_scorer(train: sp.csr_matrix) -> Scorer:
    """Every user gets the same scores, the items' training counts."""
    counts = torch.from_numpy(item_counts(train))

    def score(foldin: sp.csr_matrix) -> torch.Tensor:
        return counts.repeat(foldin.shape[0], 1)

    return score


def linear_scorer(weights: np.ndarray) -> Scorer:
    """Scores = fold-in rows @ item x item weights (EASE's B)."""

    def score(foldin: sp.csr_matrix) -> torch.Tensor:
        scores = foldin.astype(weights.dtype) @ weights
        return torch.from_numpy(np.asarray(scores, dtype=np.float32))

    return score


def ease_dtype(n_items: int) -> type[np.floating]:
    return np.float64 if n_items <= FLOAT64_MAX_ITEMS else np.float32


def gram_matrix(train: sp.csr_matrix, dtype: type[np.floating] = np.float64,
                block: int | None = None) -> np.ndarray:
    """Dense XᵀX, built a column block at a time so the sparse product never holds all n² entries."""
    n = train.shape[1]
    block = block or max(1, GRAM_BLOCK_ENTRIES // max(n, 1))
    x = train.tocsc().astype(dtype)
    xt = x.T.tocsr()
    gram = np.empty((n, n), dtype=dtype)
    for start in range(0, n, block):
        stop = min(start + block, n)
        gram[:, start:stop] = (xt @ x[:, start:stop]).toarray()
    return gram


def _inverse_power(degrees: np.ndarray, power: float, dtype: type[np.floating]) -> np.ndarray:
    """degrees**-power, 0 where the degree is 0 (an item no training user has: no walk reaches it)."""
    out = np.zeros(degrees.shape, dtype=dtype)
    seen = degrees > 0
    out[seen] = degrees[seen].astype(np.float64) ** -power
    return out


def ease_weights(train: sp.csr_matrix, lam: float, dtype: type[np.floating] | None = None) -> np.ndarray:
    """EASE's B at one λ already chosen, from a Cholesky inverse of G + λI (LAPACK potrf, potri): a
    stage that needs no λ search skips the eigendecomposition, several times the cost."""
    dtype = dtype or ease_dtype(train.shape[1])
    gram = gram_matrix(train, dtype)
    gram[np.diag_indices_from(gram)] += lam
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    factor, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:  # G + λI is positive definite for λ > 0: a failure here is a numerical one
        raise np.linalg.LinAlgError(f"EASE at λ = {lam:g}: LAPACK Cholesky inverse failed (info {info})")
    symmetric = np.triu(inverse)
    symmetric += np.triu(inverse, 1).T  # potri fills one triangle of the symmetric inverse
    return _ease_from_inverse(symmetric)


def _ease_from_inverse(inverse: np.ndarray) -> np.ndarray:
    """EASE's closed form from P = (G + λI)⁻¹, in P's memory: B = -P / diag(P), zero diagonal."""
    inverse /= -inverse.diagonal().copy()
    np.fill_diagonal(inverse, 0.0)
    return inverse


class EaseSpectrum:
    """The Gram matrix's eigendecomposition, from which EASE at any λ follows."""

    def __init__(self, train: sp.csr_matrix, dtype: type[np.floating] | None = None) -> None:
        self.dtype = dtype or ease_dtype(train.shape[1])
        # evd (divide and conquer) is the fastest LAPACK driver for every eigenvector; G's memory is reused.
        values, self.vectors = eigh(gram_matrix(train, self.dtype), overwrite_a=True, check_finite=False,
                                    driver="evd")
        self.values = np.clip(values, 0.0, None).astype(self.dtype)  # G is PSD: below 0 is rounding
        self.squares = self.vectors**2

    def _diagonal(self, lam: float) -> np.ndarray:
        return self.squares @ (1.0 / (self.values + lam)).astype(self.dtype)

    def scorer(self, lam: float) -> Scorer:
        """Scores X B for fold-in rows X without forming B: -(X Q) diag(1/(Λ+λ)) Qᵀ / diag(P), plus X
        itself (B's zero diagonal)."""
        inverse = (1.0 / (self.values + lam)).astype(self.dtype)
        diagonal = self._diagonal(lam)

        def score(foldin: sp.csr_matrix) -> torch.Tensor:
            x = foldin.astype(self.dtype)
            projected = np.asarray(x @ self.vectors) * inverse
            scores = -(projected @ self.vectors.T) / diagonal + x.toarray()
            return torch.from_numpy(np.asarray(scores, dtype=np.float32))

        return score

    def weights(self, lam: float) -> np.ndarray:
        """B itself (item x item, zero diagonal), for a model that is kept."""
        inverse = (1.0 / (self.values + lam)).astype(self.dtype)
        return _ease_from_inverse((self.vectors * inverse) @ self.vectors.T)


def search_grid(score: Callable[[float], float], grid: Sequence[float], refine: int,
                edge_steps: int = EDGE_STEPS) -> tuple[float, dict[float, float], bool]:
    """Best positive value of a scale parameter by validation `score`: the grid, extended one
    geometric step past an end that wins (at most `edge_steps` times), then `refine` rounds of
    geometric midpoints between the best value and its neighbours. Returns the best (the smallest
    on ties), every value's score, and whether the best is still at an end of what was searched."""
    scores = {float(v): score(float(v)) for v in sorted(set(grid))}

    def best() -> tuple[float, list[float]]:
        values = sorted(scores)
        return max(values, key=lambda v: (scores[v], -v)), values

    for _ in range(edge_steps):
        top, values = best()
        if len(values) < 2 or top not in (values[0], values[-1]):
            break
        new = values[0] ** 2 / values[1] if top == values[0] else values[-1] ** 2 / values[-2]
        scores[new] = score(new)
    for _ in range(refine):
        top, values = best()
        i = values.index(top)
        for j in (i - 1, i + 1):
            if 0 <= j < len(values):
                middle = float(np.sqrt(top * values[j]))
                if middle not in scores:
                    scores[middle] = score(middle)
    top, values = best()
    return top, scores, len(values) > 1 and top in (values[0], values[-1])


@dataclass
class EaseFit:
    lam: float
    weights: np.ndarray
    validation: dict[float, float]  # every λ searched -> mean validation NDCG@max(ks)
    at_edge: bool  # the best λ is the smallest or largest searched


def fit_ease(train: sp.csr_matrix, validation: HeldOut, lambdas: Sequence[float], refine: int = 0,
             ks: tuple[int, ...] = (20, 50, 100), dtype: type[np.floating] | None = None) -> EaseFit:
    """EASE with λ searched on validation NDCG (`search_grid`), all from one eigendecomposition."""
    if not lambdas:
        raise ValueError("fit_ease needs at least one lambda")
    spectrum = EaseSpectrum(train, dtype)
    ndcg = metric_names(ks)[0]
    lam, scores, at_edge = search_grid(
        lambda v: float(score_heldout(spectrum.scorer(v), validation, ks)[ndcg].mean()), lambdas, refine)
    return EaseFit(lam=lam, weights=spectrum.weights(lam), validation=scores, at_edge=at_edge)


class Rp3Walk:
    """RP3β's item-to-item weights for one α; β only rescales its columns."""

    def __init__(self, train: sp.csr_matrix, alpha: float, dtype: type[np.floating] | None = None) -> None:
        self.dtype = dtype or ease_dtype(train.shape[1])
        x = sp.csr_matrix(train, dtype=self.dtype)
        x.data[:] = 1.0
        user_degree = np.asarray(x.sum(axis=1)).ravel()
        self.item_degree = np.asarray(x.sum(axis=0)).ravel()
        half = sp.diags(_inverse_power(user_degree, alpha / 2, self.dtype)) @ x
        self.walk = gram_matrix(sp.csr_matrix(half), self.dtype)  # Xᵀ D_u^-α X
        self.walk *= _inverse_power(self.item_degree, alpha, self.dtype)[:, None]

    def scorer(self, beta: float) -> Scorer:
        penalty = _inverse_power(self.item_degree, beta, self.dtype)

        def score(foldin: sp.csr_matrix) -> torch.Tensor:
            x = sp.csr_matrix(foldin, dtype=self.dtype)
            x.data[:] = 1.0
            return torch.from_numpy(np.asarray(x @ self.walk * penalty, dtype=np.float32))

        return score


@dataclass
class Rp3Fit:
    alpha: float
    beta: float
    scorer: Scorer
    validation: dict[tuple[float, float], float]  # (α, β) -> mean validation NDCG@max(ks)
    at_edge: bool  # α or β chosen at an end of what was searched that could have gone further


def _grow(values: list[float], best: float, low: float, high: float) -> float | None:
    """One more value past the end of `values` where `best` sits, a grid step on (within [low,
    high]); None when `best` is inside or the end is a bound."""
    values = sorted(values)
    if len(values) < 2 or best not in (values[0], values[-1]):
        return None
    if best == values[-1]:
        new = min(high, values[-1] + (values[-1] - values[-2]))
    else:
        new = max(low, values[0] - (values[1] - values[0]))
    return None if new in values else round(new, 10)


def fit_rp3beta(train: sp.csr_matrix, validation: HeldOut, alphas: Sequence[float], betas: Sequence[float],
                ks: tuple[int, ...] = (20, 50, 100), edge_steps: int = EDGE_STEPS) -> Rp3Fit:
    """RP3β by validation NDCG over the α × β grid, extended one step past an end that wins (α above
    0, β within [0, 1]; at most `edge_steps` times); first in grid order on ties."""
    ndcg = metric_names(ks)[0]
    grid_a, grid_b = sorted(set(alphas)), sorted(set(betas))
    scores: dict[tuple[float, float], float] = {}

    def fill() -> None:
        for alpha in grid_a:
            missing = [beta for beta in grid_b if (alpha, beta) not in scores]
            if missing:
                walk = Rp3Walk(train, alpha)  # one n x n walk at a time
                for beta in missing:
                    found = score_heldout(walk.scorer(beta), validation, ks)
                    scores[(alpha, beta)] = float(found[ndcg].mean())

    def best() -> tuple[float, float]:
        return max(scores, key=lambda key: scores[key])

    fill()
    for _ in range(edge_steps):
        alpha, beta = best()
        new_a = _grow(grid_a, alpha, low=grid_a[0] / 2, high=float("inf"))
        new_b = _grow(grid_b, beta, low=0.0, high=1.0)
        if new_a is None and new_b is None:
            break
        grid_a += [] if new_a is None else [new_a]
        grid_b += [] if new_b is None else [new_b]
        grid_a.sort()
        grid_b.sort()
        fill()
    alpha, beta = best()
    at_edge = _grow(grid_a, alpha, grid_a[0] / 2, float("inf")) is not None or \
        _grow(grid_b, beta, 0.0, 1.0) is not None
    return Rp3Fit(alpha=alpha, beta=beta, scorer=Rp3Walk(train, alpha).scorer(beta), validation=scores,
                  at_edge=at_edge)
