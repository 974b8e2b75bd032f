"""DVC stage `evaluate@<variant>`: test metrics at the best epoch into metrics/variants/<variant>.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from multvae.atomic import write_json, write_parquet
from multvae.config import load_config
from multvae.data import load_dataset
from multvae.evaluation import evaluate_variant
from stages.common import DataOption, ParamsOption, VariantArgument, user_errors


@user_errors
def evaluate(
    variant: VariantArgument = None,
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="Folder for <variant>.json.")] = Path("metrics/variants"),
    per_user: Annotated[Path, typer.Option(help="Folder for <variant>.parquet.")] = Path("metrics/per_user"),
) -> None:
    """Score the held-out test users with each seed's best-epoch model."""
    name = variant or "base"
    cfg = load_config(params, variant)
    summary, users = evaluate_variant(name, models / name, load_dataset(data), cfg.eval.ks,
                                      cfg.train.eval_batch_size, cfg.train.device)
    write_parquet(per_user / f"{name}.parquet", users)
    write_json(metrics / f"{name}.json", summary)
    shown = "  ".join(f"{k} {summary[k]:.4f}" for k in summary
                      if "@" in k and not k.startswith("val_"))
    typer.echo(f"evaluate {name}: {shown}  (best epoch {summary['best_epoch']}, "
               f"{summary['test_users']:,} users)")
