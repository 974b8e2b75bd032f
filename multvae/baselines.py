"""The comparison table's two baselines: most-popular and EASE (Steck, WWW 2019).

Both are scorers for `metrics.score_heldout`, so they are ranked and measured exactly as Mult-VAE
is: same split, same fold-in exclusion, same metrics.

EASE's closed form needs the dense item x item inverse. It is computed by Cholesky in a single
work buffer, so a fit holds three n x n arrays (Gram matrix, work buffer, best weights so far).
Up to FLOAT64_MAX_ITEMS items that is float64; above (ML-20M's ~20k items: 4.8 GB instead of
9.6 GB, and half the time) it is float32. That is safe: the Gram counts are exact in float32 up to
2**24 users, and G + lambda*I is well conditioned for the lambdas EASE needs. Measured: on ML-1M
float32 and float64 give the same validation and test metrics to six decimals; on a 20k-item,
10M-positive matrix at lambda 100, max|B32 - B64| is 6e-6 of max|B64| and the top-100 lists of
500 users are the same sets (99% in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import get_lapack_funcs

from multvae.data import HeldOut
from multvae.metrics import Scorer, metric_names, score_heldout

FLOAT64_MAX_ITEMS = 10_000
GRAM_BLOCK_ENTRIES = 2**24  # dense entries per column block while building the Gram matrix
MIRROR_BLOCK = 1024


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


def _mirror_upper(a: np.ndarray) -> None:
    """Copy the upper triangle onto the lower one in place, in blocks (no n² temporaries)."""
    n = a.shape[0]
    for start in range(0, n, MIRROR_BLOCK):
        stop = min(start + MIRROR_BLOCK, n)
        a[stop:, start:stop] = a[start:stop, stop:].T
        diag = a[start:stop, start:stop]
        diag[...] = np.triu(diag) + np.triu(diag, 1).T


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """B = -P / diag(P) column-wise with diag(B) = 0, where P = (G + lam*I)⁻¹; in gram's dtype.

    G + lam*I is symmetric positive definite, so Cholesky (potrf + potri, in place) inverts it at
    half the cost and a third of the memory of a general inverse.
    """
    n = gram.shape[0]
    work = gram.copy()
    work[np.diag_indices(n)] += lam
    # work.T is the same symmetric matrix in Fortran order, so LAPACK overwrites it in place;
    # its lower triangle is work's upper one.
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (work,))
    factor, info = potrf(work.T, lower=True, overwrite_a=True, clean=False)
    if info == 0:
        inverse, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: G + {lam:g}*I is not numerically positive definite "
                                    f"(LAPACK info {info}); use a larger baselines.ease_lambdas value")
    weights = inverse.T  # P in the upper triangle, C order (and `work` itself when done in place)
    _mirror_upper(weights)
    weights /= -weights.diagonal().copy()
    np.fill_diagonal(weights, 0.0)
    return weights


@dataclass
class EaseFit:
    lam: float
    weights: np.ndarray
    validation: dict[float, float]  # lambda -> mean validation NDCG@max(ks)


def fit_ease(train: sp.csr_matrix, validation: HeldOut, lambdas: Sequence[float],
             ks: tuple[int, ...] = (20, 50, 100), dtype: type[np.floating] | None = None) -> EaseFit:
    """EASE at each lambda from one Gram matrix; keeps the best by validation NDCG (first on ties)."""
    dtype = dtype or ease_dtype(train.shape[1])
    gram = gram_matrix(train, dtype)
    ndcg = metric_names(ks)[0]
    scores: dict[float, float] = {}
    best_lam, best_weights = None, None
    for lam in lambdas:
        weights = ease_weights(gram, lam)
        scores[lam] = float(score_heldout(linear_scorer(weights), validation, ks)[ndcg].mean())
        if best_lam is None or scores[lam] > scores[best_lam]:
            best_lam, best_weights = lam, weights
        del weights  # frees a losing fit before the next one is allocated
    if best_lam is None or best_weights is None:
        raise ValueError("fit_ease needs at least one lambda")
    return EaseFit(lam=best_lam, weights=best_weights, validation=scores)
