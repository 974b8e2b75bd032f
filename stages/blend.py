"""DVC stages `blend@<row>`: a Mult-VAE row's scores blended with EASE's, the weight chosen on
validation, into metrics/variants/<row>_ease.json (study.blends lists the rows); and
`control_blend`: RP3β blended with EASE on the same weights, the row rp3beta_ease."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import DataOption, ParamsOption, distinct_paths, user_errors


@user_errors
def blend(
    row: Annotated[str, typer.Argument(help="A Mult-VAE row of study.blends.")],
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    models: Annotated[Path, typer.Option(help="Folder of trained models.")] = Path("models"),
    ease: Annotated[Path, typer.Option(help="EASE's λ by fold, as the ease stage hands it over.")] = Path(
        "models/ease/lambda.json"),
    metrics: Annotated[Path, typer.Option(help="Folder for <row>_ease.json.")] = Path("metrics/variants"),
    per_user: Annotated[Path, typer.Option(help="Folder for <row>_ease.parquet.")] = Path("metrics/per_user"),
) -> None:
    """Blend each seed's model of ROW with EASE at the λ EASE chose on each fold; w on validation."""
    from multvae.blend import evaluate_blend
    from multvae.config import BLEND_SUFFIX, ConfigError
    from multvae.folds import fingerprints, load_folds
    from multvae.handoff import read_ease_choice
    from multvae.params import load_params
    from multvae.results import write_result
    from multvae.runtime import setup

    distinct_paths({"--params": params, "--data": data, "--models": models, "--ease": ease},
                   {"--metrics": metrics / f"{row}{BLEND_SUFFIX}.json",
                    "--per-user": per_user / f"{row}{BLEND_SUFFIX}.parquet"})
    read = load_params(params)
    if row not in read.study.blends:
        raise ConfigError(f"{params}: {row} is not in study.blends {list(read.study.blends)}")
    cfg, runtime = read.config(row), read.runtime
    folds = load_folds(data, cfg.data.folds, cfg.eval.ks)
    split = fingerprints(folds)
    lambdas, ease_budget = read_ease_choice(ease, split)
    name = row + BLEND_SUFFIX
    summary, users = evaluate_blend(name, row, models, cfg.train.seeds, folds, lambdas,
                                    cfg.baselines.blend_weights, cfg.eval.ks, runtime.eval_batch_size,
                                    setup(runtime), expected=cfg, inherited=ease_budget)
    read.check_unchanged()
    write_result(summary, users, metrics / f"{name}.json", per_user / f"{name}.parquet", split)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    typer.echo(f"blend {name}: weight {summary.chosen['weight']} of {row}'s scores; {shown} "
               f"({summary.test_users:,} users)")


@user_errors
def control_blend(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    ease: Annotated[Path, typer.Option(help="EASE's λ by fold, as the ease stage hands it over.")] = Path(
        "models/ease/lambda.json"),
    rp3beta: Annotated[Path, typer.Option(help="RP3β's α and β by fold, as the rp3beta stage hands them "
                                               "over.")] = Path("models/rp3beta/choice.json"),
    metrics: Annotated[Path, typer.Option(help="Folder for rp3beta_ease.json.")] = Path("metrics/variants"),
    per_user: Annotated[Path, typer.Option(help="Folder for rp3beta_ease.parquet.")] = Path(
        "metrics/per_user"),
) -> None:
    """Blend RP3β with EASE at the settings each chose on each fold; w on validation."""
    from multvae.blend import evaluate_control
    from multvae.config import CONTROL_BLEND
    from multvae.folds import fingerprints, load_folds
    from multvae.handoff import read_ease_choice, read_rp3_choice
    from multvae.params import load_params
    from multvae.results import write_result

    distinct_paths({"--params": params, "--data": data, "--ease": ease, "--rp3beta": rp3beta},
                   {"--metrics": metrics / f"{CONTROL_BLEND}.json",
                    "--per-user": per_user / f"{CONTROL_BLEND}.parquet"})
    read = load_params(params)
    cfg, runtime = read.base, read.runtime
    folds = load_folds(data, cfg.data.folds, cfg.eval.ks)
    split = fingerprints(folds)
    lambdas, ease_budget = read_ease_choice(ease, split)
    settings, rp3_budget = read_rp3_choice(rp3beta, split)
    summary, users = evaluate_control(CONTROL_BLEND, folds, lambdas, settings, cfg.baselines.blend_weights,
                                      cfg.eval.ks, runtime.eval_batch_size,
                                      {"ease": ease_budget, "rp3beta": rp3_budget})
    read.check_unchanged()
    write_result(summary, users, metrics / f"{CONTROL_BLEND}.json", per_user / f"{CONTROL_BLEND}.parquet",
                 split)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    typer.echo(f"control blend {CONTROL_BLEND}: weight {summary.chosen['weight']} of RP3β's scores; {shown} "
               f"({summary.test_users:,} users)")
