"""A Mult-VAE row blended with EASE: w·z(VAE) + (1 − w)·z(EASE), where z standardises each user's
scores over the items (the two models' scores are on different scales: log-odds against a linear
reconstruction), and w is chosen on the fold's validation users from a grid that holds 0 and 1,
each path alone. The deep model and the shallow one make different errors (Vančura & Kordík,
VASP, 2021, train the two together); a validated score blend is the plainest way to combine them.

Its control: RP3β blended with EASE the same way, on the same weights. Two shallow models blended
also gain over one; a VAE blend that does not beat the control cannot credit its gain to the VAE.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multvae.baselines import Rp3Walk, ease_weights, linear_scorer
from multvae.config import Config
from multvae.data import Dataset, HeldOut
from multvae.evaluation import load_run
from multvae.metrics import Scorer, metric_names, score_heldout
from multvae.model import make_scorer
from multvae.results import BASELINE_SEED, Summary, per_user_rows, summarize


def standardized(scores: torch.Tensor) -> torch.Tensor:
    """Each row (user) centred on its mean over the items and divided by its standard deviation."""
    scores = scores.to(torch.float64)
    spread = scores.std(dim=1, keepdim=True).clamp_min(1e-12)
    return (scores - scores.mean(dim=1, keepdim=True)) / spread


def _scores(scorer: Scorer, heldout: HeldOut, batch_size: int) -> torch.Tensor:
    """Every held-out user's standardised scores, in row order."""
    parts = []
    with torch.no_grad():
        for start in range(0, heldout.foldin.shape[0], batch_size):
            parts.append(standardized(scorer(heldout.foldin[start:start + batch_size])).cpu())
    return torch.cat(parts)


def blend_metrics(vae: Scorer, ease: Scorer, heldout: HeldOut, weights: Sequence[float],
                  ks: tuple[int, ...], batch_size: int = 2000) -> dict[float, pd.DataFrame]:
    """Per-user metrics (`score_heldout`'s table) of the blend at each weight: each model scores the
    users once, and each weight ranks their mix."""
    a, b = _scores(vae, heldout, batch_size), _scores(ease, heldout, batch_size)
    n = max(heldout.foldin.shape[0], 1)  # one batch: the scorer returns every user's blended scores

    def mixed(weight: float) -> Scorer:
        return lambda _: weight * a + (1 - weight) * b

    return {w: score_heldout(mixed(w), heldout, ks, batch_size=n) for w in weights}


def choose_weight(validation: list[dict[float, pd.DataFrame]], key: str) -> tuple[float, dict[float, float]]:
    """The weight with the best validation `key` averaged over the runs (one table per training
    seed), the first in grid order on ties, and every weight's score."""
    scores = {w: float(np.mean([run[w][key].mean() for run in validation])) for w in validation[0]}
    return max(scores, key=lambda w: scores[w]), scores


def _blend_fold(left: dict[int, Scorer], right: Scorer, data: Dataset, weights: Sequence[float],
                ks: tuple[int, ...], batch_size: int,
                ) -> tuple[float, dict[float, float], dict[int, pd.DataFrame]]:
    """One fold: w chosen on its validation users over the runs' mean (`left`: seed -> scorer),
    every weight's validation score, and each run's per-user test metrics at w."""
    key = metric_names(ks)[0]
    validation = [blend_metrics(scorer, right, data.validation, weights, ks, batch_size)
                  for scorer in left.values()]
    weight, scores = choose_weight(validation, key)
    tests = {seed: blend_metrics(scorer, right, data.test, [weight], ks, batch_size)[weight]
             for seed, scorer in left.items()}
    return weight, scores, tests


def _settings(chosen: dict[str, dict[int, float]], grid: dict[int, dict[float, float]]) -> dict[str, object]:
    """What the summary records: each choice (one value, or by fold), the weights' grid."""
    one = len(grid) == 1

    def shown(values: dict[int, float]) -> object:
        return next(iter(values.values())) if one else {str(f): v for f, v in values.items()}

    grids = {str(f): {f"{w:g}": v for w, v in scores.items()} for f, scores in grid.items()}
    return {**{name: shown(values) for name, values in chosen.items()},
            "grid": next(iter(grids.values())) if one else grids}


def evaluate_blend(name: str, row: str, models: Path, seeds: tuple[int, ...], folds: dict[int, Dataset],
                   lambdas: dict[int, float], weights: Sequence[float], ks: tuple[int, ...],
                   batch_size: int, device: torch.device, expected: Config,
                   inherited: int = 1) -> tuple[Summary, pd.DataFrame]:
    """(summary, per-user test metrics) of `row`'s models (every seed, each fold's) blended with
    EASE at that fold's λ, w chosen on the fold's validation users over the seeds' mean. Every seed
    is a run of the blend, so the inference counts the Mult-VAE row's run-to-run spread. Its tuning
    budget is the weights tried plus what EASE tried (`inherited`): both choices were made on the
    same validation users."""
    names = metric_names(ks)
    per_user, chosen, grid, by_fold = [], {}, {}, {}
    epochs: dict[int, tuple[int, int]] = {}
    for fold, data in folds.items():
        ease = linear_scorer(ease_weights(data.train, lambdas[fold]))
        scorers = {}
        for seed in seeds:
            model, saved = load_run(models, row, fold, seed, data, device, expected)
            scorers[seed] = make_scorer(model, device)
            epochs.setdefault(seed, (saved.best_epoch, saved.epochs))
        chosen[fold], grid[fold], tests = _blend_fold(scorers, ease, data, weights, ks, batch_size)
        by_fold[fold] = grid[fold][chosen[fold]]
        users = data.user_ids(data.test.users)
        per_user += [per_user_rows(test, users, fold, seed) for seed, test in tests.items()]
    table = pd.concat(per_user, ignore_index=True)
    settings = {**_settings({"weight": chosen, "lambda": lambdas}, grid),
                "tuning_budget": len(weights) + inherited,
                "budget_parts": {"weight": len(weights), "ease": inherited}, "blend_of": [row, "ease"]}
    return summarize(name, "vae", table, names, by_fold, epochs=epochs, chosen=settings), table


def evaluate_control(name: str, folds: dict[int, Dataset], lambdas: dict[int, float],
                     rp3: dict[int, tuple[float, float]], weights: Sequence[float], ks: tuple[int, ...],
                     batch_size: int, inherited: dict[str, int]) -> tuple[Summary, pd.DataFrame]:
    """(summary, per-user test metrics) of the control blend: RP3β at each fold's α and β with EASE
    at its λ, w (RP3β's weight) chosen on the fold's validation users. Deterministic, like its parts:
    a baseline row. Its tuning budget: the weights plus what EASE and RP3β tried (`inherited`)."""
    per_user, chosen, grid, by_fold = [], {}, {}, {}
    for fold, data in folds.items():
        alpha, beta = rp3[fold]
        left = {BASELINE_SEED: Rp3Walk(data.train, alpha).scorer(beta)}
        ease = linear_scorer(ease_weights(data.train, lambdas[fold]))
        chosen[fold], grid[fold], tests = _blend_fold(left, ease, data, weights, ks, batch_size)
        by_fold[fold] = grid[fold][chosen[fold]]
        users = data.user_ids(data.test.users)
        per_user.append(per_user_rows(tests[BASELINE_SEED], users, fold, BASELINE_SEED))
    table = pd.concat(per_user, ignore_index=True)
    alphas, betas = {f: a for f, (a, _) in rp3.items()}, {f: b for f, (_, b) in rp3.items()}
    settings = {**_settings({"weight": chosen, "lambda": lambdas, "alpha": alphas, "beta": betas}, grid),
                "tuning_budget": len(weights) + sum(inherited.values()),
                "budget_parts": {"weight": len(weights), **inherited}, "blend_of": ["rp3beta", "ease"]}
    return summarize(name, "baseline", table, metric_names(ks), by_fold, chosen=settings), table
