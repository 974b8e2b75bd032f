"""DVC stage `train@<variant>`: train one variant of the ablation matrix, once per seed in train.seeds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from multvae.atomic import atomic_dir, atomic_path
from multvae.config import load_config
from multvae.data import load_dataset
from multvae.training import save_model, train_model
from stages.common import DataOption, ParamsOption, VariantArgument, user_errors


@user_errors
def train(
    variant: VariantArgument = None,
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models, a sub-folder per variant.")] = Path(
        "models"),
    curves: Annotated[Path, typer.Option(help="Folder of per-epoch logs (<variant>.csv).")] = Path(
        "plots/curves"),
    checkpoints: Annotated[Path, typer.Option(help="Where per-epoch checkpoints for resuming live.")] = Path(
        ".checkpoints"),
) -> None:
    """Train a variant (or, without one, the base configuration of --params) and keep its best epoch."""
    name = variant or "base"
    cfg = load_config(params, variant)
    dataset = load_dataset(data)
    typer.echo(f"train {name}: {dataset.train.shape[0]:,} users x {dataset.n_items:,} items, "
               f"{dataset.train.nnz:,} positives; seeds {list(cfg.train.seeds)}")
    logs = []
    with atomic_dir(models / name) as out:
        for seed in cfg.train.seeds:
            result = train_model(cfg, dataset, seed, checkpoint=checkpoints / name / f"seed-{seed}.pt",
                                 log=lambda line, s=seed: typer.echo(f"[{name} seed {s}] {line}"))
            save_model(out / f"seed-{seed}.pt", result, cfg, dataset.n_items, seed)
            logs.append(result.curves)
    with atomic_path(curves / f"{name}.csv") as tmp:
        pd.concat(logs).to_csv(tmp, index=False)
    shutil.rmtree(checkpoints / name, ignore_errors=True)
