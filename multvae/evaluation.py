"""Test metrics of a trained variant at its best epoch, per user and summarised, for every seed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from multvae.data import Dataset
from multvae.metrics import metric_names, score_heldout
from multvae.training import load_model, make_scorer, resolve_device


class EvaluationError(FileNotFoundError):
    """No trained model to evaluate; the message says which stage to run."""


def evaluate_variant(name: str, model_dir: Path, data: Dataset, ks: tuple[int, ...],
                     batch_size: int, device: str = "auto") -> tuple[dict, pd.DataFrame]:
    """(summary for metrics/variants/<name>.json, per-user test metrics with a seed column)."""
    paths = sorted(model_dir.glob("seed-*.pt"))
    if not paths:
        raise EvaluationError(
            f"{model_dir}: no trained model (seed-*.pt); run `dvc repro train@{name}` first")
    names = metric_names(ks)
    dev = resolve_device(device)
    per_user, seeds = [], {}
    for path in paths:
        model, saved = load_model(path, dev)
        with torch.no_grad():
            users = score_heldout(make_scorer(model, dev), data.test, ks, batch_size)
        users.insert(1, "seed", saved["seed"])
        per_user.append(users)
        val_key = f"val_{names[0]}"
        seeds[str(saved["seed"])] = {
            **{n: float(users[n].mean()) for n in names},
            "best_epoch": int(saved["best_epoch"]),
            val_key: float(saved["best_validation"][val_key]),
            "train_seconds": round(float(saved["seconds"]), 1),
        }
    table = pd.DataFrame(seeds).T
    summary = {
        "variant": name,
        "kind": "vae",
        **{n: float(table[n].mean()) for n in names},
        f"val_{names[0]}": float(table[f"val_{names[0]}"].mean()),
        "best_epoch": int(seeds[next(iter(seeds))]["best_epoch"]),
        "test_users": int(data.test.foldin.shape[0]),
        "train_seconds": round(float(table["train_seconds"].sum()), 1),
        "seeds": seeds,
    }
    return summary, pd.concat(per_user, ignore_index=True)
