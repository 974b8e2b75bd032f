"""Ranking metrics as Liang et al. define them, per user, for any scorer.

Fold-in items are excluded from the ranking (they are known, not recommended); NDCG@k divides
by the ideal DCG over min(k, |I_u|) items and Recall@k by min(k, |I_u|), so both reach 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from multvae.data import HeldOut
from multvae.errors import MultVAEError

Scorer = Callable[[sp.csr_matrix], torch.Tensor]


class CutoffError(MultVAEError, ValueError):
    """A ranking cut-off (eval.ks) longer than the item list."""


def check_cutoffs(ks: tuple[int, ...], n_items: int, where: str) -> None:
    """Refuse a cut-off k larger than the number of items: NDCG@k and Recall@k would be computed on
    a shorter list than their name says."""
    if max(ks) > n_items:
        raise CutoffError(f"eval.ks: cut-off {max(ks)} is larger than the {n_items:,} items of {where}; "
                          f"use cut-offs of at most {n_items}")


def top_k(scores: torch.Tensor, foldin: sp.csr_matrix, k: int) -> torch.Tensor:
    """Indices of the k best-scored items per row, fold-in items excluded, best first."""
    scores = scores.clone()
    rows, cols = foldin.nonzero()
    where = (torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device))
    scores[where] = -torch.inf
    k = min(k, scores.shape[1])
    return torch.topk(scores, k, dim=1, sorted=True).indices


def hits(top: np.ndarray, target: sp.csr_matrix) -> np.ndarray:
    """hits[i, j] is True when the j-th ranked item of row i is one of its target items."""
    n, k = top.shape
    rows = np.repeat(np.arange(n), k)
    return np.asarray(target[rows, top.ravel()]).reshape(n, k) > 0


def ndcg_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit[:, :k] * discounts[: hit[:, :k].shape[1]]).sum(axis=1)
    cum = np.r_[0.0, np.cumsum(discounts)]
    idcg = cum[np.minimum(n_relevant, k)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def recall_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    denom = np.minimum(n_relevant, k)
    found = hit[:, :k].sum(axis=1).astype(np.float64)
    return np.divide(found, denom, out=np.zeros_like(found), where=denom > 0)


def metric_names(ks: tuple[int, ...]) -> list[str]:
    """The paper's three: NDCG at the largest cut-off, Recall at the others."""
    cutoffs = sorted(ks)
    return [f"ndcg@{cutoffs[-1]}"] + [f"recall@{k}" for k in cutoffs[:-1]]


def val_key(ks: tuple[int, ...]) -> str:
    """The validation metric that selects the best epoch and the baselines' hyper-parameters."""
    return f"val_{metric_names(ks)[0]}"


def score_heldout(scorer: Scorer, heldout: HeldOut, ks: tuple[int, ...] = (20, 50, 100),
                  batch_size: int = 2000) -> pd.DataFrame:
    """Per-user metrics (one row per held-out user, column `user` first) for the scorer's ranking."""
    ks = tuple(sorted(ks))
    k_max = ks[-1]
    n_relevant = np.diff(heldout.target.indptr)
    parts = []
    for start in range(0, heldout.foldin.shape[0], batch_size):
        stop = min(start + batch_size, heldout.foldin.shape[0])
        foldin = heldout.foldin[start:stop]
        with torch.no_grad():
            scores = scorer(foldin)
        top = top_k(scores, foldin, k_max).cpu().numpy()
        parts.append(hits(top, heldout.target[start:stop]))
    hit = np.concatenate(parts) if parts else np.zeros((0, k_max), dtype=bool)
    out = {"user": heldout.users}
    out[f"ndcg@{k_max}"] = ndcg_at_k(hit, n_relevant, k_max)
    for k in ks[:-1]:
        out[f"recall@{k}"] = recall_at_k(hit, n_relevant, k)
    return pd.DataFrame(out)
