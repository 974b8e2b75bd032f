"""DVC stage `train@<variant>-<seed>`: train one variant of the ablation matrix with one seed.

Each (variant, seed) is its own stage, so seeds run in parallel under `dvc queue`, on other
machines, or one at a time, and adding a seed trains only that seed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from stages.common import DataOption, ParamsOption, VariantArgument, user_errors


def _log(prefix: str, line: str) -> None:
    typer.echo(f"{prefix} {line}")


@user_errors
def train(
    variant: VariantArgument = None,
    seed: Annotated[int | None, typer.Option(help="Train this seed only (default: every seed of "
                                                  "train.seeds, one after another).")] = None,
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models, a sub-folder per variant.")] = Path(
        "models"),
    logs: Annotated[Path, typer.Option(
        help="DVCLive folders of per-epoch logs: <logs>/<variant>/seed-<s>.")] = Path("dvclive"),
    checkpoints: Annotated[Path, typer.Option(help="Where per-epoch checkpoints for resuming live.")] = Path(
        ".checkpoints"),
) -> None:
    """Train a variant (or, without one, the base configuration of --params) and keep its best epoch."""
    from multvae.config import ConfigError, load_config, load_runtime
    from multvae.data import load_dataset
    from multvae.live_log import EpochLog
    from multvae.metrics import check_cutoffs
    from multvae.model_file import SavedModel, save_model
    from multvae.training import train_model

    name = variant or "base"
    cfg, runtime = load_config(params, variant), load_runtime(params)
    if seed is not None and seed not in cfg.train.seeds:
        raise ConfigError(f"{params}: --seed {seed} is not in train.seeds {list(cfg.train.seeds)}")
    dataset = load_dataset(data)
    check_cutoffs(cfg.eval.ks, dataset.n_items, str(data))
    seeds = [seed] if seed is not None else list(cfg.train.seeds)
    typer.echo(f"train {name}: {dataset.train.shape[0]:,} users x {dataset.n_items:,} items, "
               f"{dataset.train.nnz:,} positives; seeds {seeds}")
    for s in seeds:
        checkpoint = checkpoints / name / f"seed-{s}.pt"
        epoch_log = EpochLog(logs / name / f"seed-{s}")
        result = train_model(cfg, dataset, s, runtime, checkpoint=checkpoint,
                             log=functools.partial(_log, f"[{name} seed {s}]"), on_epoch=epoch_log)
        assert result.state_dict is not None  # no stop hook: every epoch ran
        save_model(models / name / f"seed-{s}.pt", result.state_dict, SavedModel(
            config=cfg, seed=s, movie_ids=dataset.movie_ids, data_fingerprint=dataset.fingerprint,
            best_epoch=result.best_epoch, best_validation=result.best_validation))
        checkpoint.unlink(missing_ok=True)  # the folder stays: another seed may be writing there
