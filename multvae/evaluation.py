"""Test metrics of a trained variant at its best epoch, per user and summarised, for every seed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from multvae.config import Config
from multvae.data import Dataset
from multvae.errors import MultVAEError
from multvae.layout import run_path, train_stage
from multvae.metrics import metric_names, score_heldout, val_key
from multvae.model import MultVAE, make_scorer
from multvae.model_file import SavedModel, load_model
from multvae.results import Summary, per_user_rows, summarize


class EvaluationError(MultVAEError, FileNotFoundError):
    """No trained model to evaluate; the message says which stage to run."""


def load_run(models: Path, name: str, fold: int, seed: int, data: Dataset, device: torch.device,
             expected: Config | None) -> tuple[MultVAE, SavedModel]:
    """The model of one run of variant `name`, from `models`/<name>/fold-<k>/seed-<s>.pt. Refused, with
    the stage to rerun, when it is missing, was trained on another prepared split or with other
    settings than `expected` (model_file.load_model), or was filed under another seed or fold."""
    path = run_path(models, name, fold, seed, ".pt")
    retrain = f"dvc repro {train_stage(name, fold, seed)}"
    if not path.is_file():
        raise EvaluationError(f"{path}: no trained model; run `{retrain}` first")
    model, saved = load_model(path, device, data.fingerprint, retrain, expected)
    if (saved.seed, saved.fold) != (seed, fold):
        raise EvaluationError(f"{path} holds the model of seed {saved.seed}, fold {saved.fold}, not "
                              f"seed {seed}, fold {fold}; run `{retrain}`")
    return model, saved


def evaluate_variant(name: str, models: Path, seeds: tuple[int, ...], folds: dict[int, Dataset],
                     ks: tuple[int, ...], batch_size: int, device: torch.device,
                     expected: Config | None = None) -> tuple[Summary, pd.DataFrame]:
    """(summary, per-user test metrics with fold and seed columns) of the variant's models, one per
    fold of `folds` and seed of `seeds`, in `models`/<name>/fold-<k>/seed-<s>.pt; a model left there by a
    seed or fold no longer in the params is not used; each run is loaded by `load_run`."""
    names = metric_names(ks)
    key = val_key(ks)
    per_user = []
    validation: dict[int, list[float]] = {}
    epochs: dict[int, tuple[int, int]] = {}
    diverged: list[str] = []
    for fold, data in folds.items():
        for seed in seeds:
            model, saved = load_run(models, name, fold, seed, data, device, expected)
            with torch.no_grad():
                scores = score_heldout(make_scorer(model, device), data.test, ks, batch_size)
            per_user.append(per_user_rows(scores, data.user_ids(data.test.users), fold, saved.seed))
            epochs.setdefault(saved.seed, (saved.best_epoch, saved.epochs))
            if saved.diverged:
                diverged.append(f"fold {fold} seed {seed}: {saved.diverged}")
            validation.setdefault(fold, []).append(saved.best_validation[key])
    table = pd.concat(per_user, ignore_index=True)
    by_fold = {fold: sum(scores) / len(scores) for fold, scores in validation.items()}
    summary = summarize(name, "vae", table, names, by_fold, epochs=epochs, diverged=diverged)
    return summary, table
