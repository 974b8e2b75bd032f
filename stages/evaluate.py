"""DVC stage `evaluate@<variant>`: test metrics at the best epoch into metrics/variants/<variant>.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import DataOption, ParamsOption, VariantArgument, distinct_paths, user_errors


@user_errors
def evaluate(
    variant: VariantArgument = None,
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="Folder for <variant>.json.")] = Path("metrics/variants"),
    per_user: Annotated[Path, typer.Option(help="Folder for <variant>.parquet.")] = Path("metrics/per_user"),
) -> None:
    """Score each fold's test users with the best-epoch model of every seed trained on that fold."""
    from multvae.evaluation import evaluate_variant
    from multvae.folds import fingerprints, load_folds
    from multvae.params import load_params
    from multvae.results import write_result
    from multvae.runtime import setup

    name = variant or "base"
    distinct_paths({"--params": params, "--data": data, "--models": models},
                   {"--metrics": metrics / f"{name}.json", "--per-user": per_user / f"{name}.parquet"})
    read = load_params(params)
    cfg, runtime = read.config(variant), read.runtime
    device = setup(runtime)
    folds = load_folds(data, cfg.data.folds, cfg.eval.ks)
    summary, users = evaluate_variant(name, models, cfg.train.seeds, folds, cfg.eval.ks,
                                      runtime.eval_batch_size, device, expected=cfg)
    read.check_unchanged()
    write_result(summary, users, metrics / f"{name}.json", per_user / f"{name}.parquet",
                 fingerprints(folds))
    shown = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    typer.echo(f"evaluate {name}: {shown}  (best epoch {summary.best_epoch}, {summary.test_users:,} users)")
