"""DVC stage `train@<variant>`: train one variant of the ablation matrix, once per seed in train.seeds."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Annotated

import typer

from stages.common import DataOption, ParamsOption, VariantArgument, user_errors


def _log(prefix: str, line: str) -> None:
    typer.echo(f"{prefix} {line}")


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
    import pandas as pd

    from multvae.atomic import atomic_dir, atomic_path
    from multvae.config import load_config, load_runtime
    from multvae.data import load_dataset
    from multvae.metrics import check_cutoffs
    from multvae.model_file import SavedModel, save_model
    from multvae.training import train_model

    name = variant or "base"
    cfg, runtime = load_config(params, variant), load_runtime(params)
    dataset = load_dataset(data)
    check_cutoffs(cfg.eval.ks, dataset.n_items, str(data))
    typer.echo(f"train {name}: {dataset.train.shape[0]:,} users x {dataset.n_items:,} items, "
               f"{dataset.train.nnz:,} positives; seeds {list(cfg.train.seeds)}")
    logs = []
    with atomic_dir(models / name) as out:
        for seed in cfg.train.seeds:
            checkpoint = checkpoints / name / f"seed-{seed}.pt"
            result = train_model(cfg, dataset, seed, runtime, checkpoint=checkpoint,
                                 log=functools.partial(_log, f"[{name} seed {seed}]"))
            assert result.state_dict is not None  # no stop hook: every epoch ran
            save_model(out / f"seed-{seed}.pt", result.state_dict, SavedModel(
                config=cfg, seed=seed, movie_ids=dataset.movie_ids, data_fingerprint=dataset.fingerprint,
                best_epoch=result.best_epoch, best_validation=result.best_validation))
            logs.append(result.curves)
    with atomic_path(curves / f"{name}.csv") as tmp:
        pd.concat(logs).to_csv(tmp, index=False)
    shutil.rmtree(checkpoints / name, ignore_errors=True)
