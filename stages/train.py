"""DVC stage `train@<variant>-<seed>-<fold>`: train one variant of the ablation matrix with one
seed on one fold.

Each (variant, seed, fold) is its own stage, so runs go in parallel under `dvc queue`, on other
machines, or one at a time, and adding a seed or a fold trains only that one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from stages.common import DataOption, ParamsOption, VariantArgument, distinct_paths, user_errors


def _log(prefix: str, line: str) -> None:
    typer.echo(f"{prefix} {line}")


@user_errors
def train(
    variant: VariantArgument = None,
    seed: Annotated[int | None, typer.Option(help="Train this seed only (default: every seed of "
                                                  "train.seeds, one after another).")] = None,
    fold: Annotated[int | None, typer.Option(help="Train on this fold only (default: every fold of "
                                                  "data.folds).")] = None,
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models, a sub-folder per variant.")] = Path(
        "models"),
    logs: Annotated[Path, typer.Option(
        help="DVCLive folders of per-epoch logs: <logs>/<variant>/fold-<k>/seed-<s>.")] = Path("dvclive"),
    checkpoints: Annotated[Path, typer.Option(help="Where per-epoch checkpoints for resuming live.")] = Path(
        ".checkpoints"),
) -> None:
    """Train a variant (or, without one, the base configuration of --params) and keep its best epoch."""
    from multvae.config import ConfigError
    from multvae.data import load_dataset
    from multvae.layout import fold_dir, run_path
    from multvae.live_log import EpochLog
    from multvae.metrics import check_cutoffs
    from multvae.model_file import SavedModel, save_model
    from multvae.params import load_params
    from multvae.run_lock import run_lock
    from multvae.training import train_model

    name = variant or "base"
    distinct_paths({"--params": params, "--data": data},
                   {"--models": models, "--logs": logs, "--checkpoints": checkpoints})
    read = load_params(params)
    cfg, runtime = read.config(variant), read.runtime
    if seed is not None and seed not in cfg.train.seeds:
        raise ConfigError(f"{params}: --seed {seed} is not in train.seeds {list(cfg.train.seeds)}")
    if fold is not None and fold not in cfg.data.folds:
        raise ConfigError(f"{params}: --fold {fold} is not in data.folds {list(cfg.data.folds)}")
    seeds = [seed] if seed is not None else list(cfg.train.seeds)
    for k in [fold] if fold is not None else list(cfg.data.folds):
        dataset = load_dataset(fold_dir(data, k))
        check_cutoffs(cfg.eval.ks, dataset.n_items, str(fold_dir(data, k)))
        typer.echo(f"train {name} fold {k}: {dataset.train.shape[0]:,} users x {dataset.n_items:,} items, "
                   f"{dataset.train.nnz:,} positives; seeds {seeds}")
        for s in seeds:
            checkpoint = run_path(checkpoints, name, k, s, ".pt")
            with run_lock(run_path(checkpoints, name, k, s, ".lock"), f"train {name} fold {k} seed {s}"):
                result = train_model(cfg, dataset, s, runtime, checkpoint=checkpoint,
                                     log=functools.partial(_log, f"[{name} fold {k} seed {s}]"),
                                     on_epoch=EpochLog(run_path(logs, name, k, s)))
                assert result.state_dict is not None  # no stop hook: every epoch ran
                read.check_unchanged()
                save_model(run_path(models, name, k, s, ".pt"), result.state_dict, SavedModel(
                    config=cfg, seed=s, movie_ids=dataset.movie_ids, data_fingerprint=dataset.fingerprint,
                    best_epoch=result.best_epoch, best_validation=result.best_validation, fold=k,
                    epochs=len(result.curves), diverged=result.diverged))
                checkpoint.unlink(missing_ok=True)  # the folder stays: another run may be writing there
