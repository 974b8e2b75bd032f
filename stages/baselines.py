"""DVC stages `popularity` and `ease`: the comparison table's baselines on the prepared split.

They write the same two files as a Mult-VAE variant (summary JSON, per-user test metrics), so the
aggregate stage and the significance tests treat them like any other row of the table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from multvae.atomic import write_json, write_parquet
from multvae.baselines import fit_ease, linear_scorer, popularity_scorer
from multvae.config import load_config
from multvae.data import DataError, Dataset, load_dataset
from multvae.metrics import Scorer, metric_names, score_heldout
from stages.common import DataOption, ParamsOption, user_errors

BASELINE_SEED = 0  # baselines are deterministic; one "seed" so per-user tables share a schema


def _load(data: Path) -> Dataset:
    dataset = load_dataset(data)
    for role, heldout in (("validation", dataset.validation), ("test", dataset.test)):
        if heldout.users.size == 0:
            raise DataError(f"{data}: the {role} split has no users; check data.heldout_users")
    return dataset


def _write(name: str, scorer: Scorer, dataset: Dataset, ks: tuple[int, ...], val_ndcg: float,
           metrics: Path, per_user: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Score the test users, write both outputs, return the summary."""
    names = metric_names(ks)
    table = score_heldout(scorer, dataset.test, ks)
    table.insert(1, "seed", BASELINE_SEED)
    summary: dict[str, Any] = {"variant": name, "kind": "baseline"}
    summary.update({m: float(table[m].mean()) for m in names})
    summary[f"val_{names[0]}"] = val_ndcg
    summary["test_users"] = int(len(table))
    summary.update(extra)
    write_parquet(per_user, table)
    write_json(metrics, summary)
    return summary


def _line(summary: dict[str, Any], ks: tuple[int, ...]) -> str:
    return ", ".join(f"{m} {summary[m]:.4f}" for m in metric_names(ks))


@user_errors
def popularity(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path(
        "metrics/variants/most_popular.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/most_popular.parquet"),
) -> None:
    """Most-popular: rank every item by its number of training users."""
    cfg = load_config(params)
    ks = cfg.eval.ks
    started = time.perf_counter()
    dataset = _load(data)
    scorer = popularity_scorer(dataset.train)
    val = score_heldout(scorer, dataset.validation, ks)[metric_names(ks)[0]].mean()
    summary = _write("most_popular", scorer, dataset, ks, float(val), metrics, per_user, {})
    typer.echo(f"popularity: {_line(summary, ks)} on {summary['test_users']:,} test users "
               f"({time.perf_counter() - started:.1f}s) -> {metrics}")


@user_errors
def ease(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/ease.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/ease.parquet"),
) -> None:
    """EASE (Steck 2019): lambda from baselines.ease_lambdas by validation NDCG, then the test users."""
    cfg = load_config(params)
    ks = cfg.eval.ks
    started = time.perf_counter()
    dataset = _load(data)
    fit = fit_ease(dataset.train, dataset.validation, cfg.baselines.ease_lambdas, ks)
    extra = {"lambda": fit.lam, "validation": {f"{lam:g}": v for lam, v in fit.validation.items()}}
    summary = _write("ease", linear_scorer(fit.weights), dataset, ks, fit.validation[fit.lam],
                     metrics, per_user, extra)
    typer.echo(f"ease: lambda {fit.lam:g} ({fit.weights.dtype}), {_line(summary, ks)} on "
               f"{summary['test_users']:,} test users ({time.perf_counter() - started:.1f}s) -> {metrics}")
