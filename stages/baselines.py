"""DVC stages `popularity` and `ease`: the comparison table's baselines on the prepared split.

They write the same two files as a Mult-VAE variant (summary JSON, per-user test metrics), so the
aggregate stage and the significance tests treat them like any other row of the table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stages.common import DataOption, ParamsOption, user_errors

if TYPE_CHECKING:
    from multvae.data import Dataset
    from multvae.metrics import Scorer

BASELINE_SEED = 0  # baselines are deterministic; one "seed" so per-user tables share a schema


def _load(data: Path, ks: tuple[int, ...]) -> Dataset:
    from multvae.data import DataError, load_dataset
    from multvae.metrics import check_cutoffs

    dataset = load_dataset(data)
    check_cutoffs(ks, dataset.n_items, str(data))
    for role, heldout in (("validation", dataset.validation), ("test", dataset.test)):
        if heldout.users.size == 0:
            raise DataError(f"{data}: the {role} split has no users; check data.heldout_users")
    return dataset


def _score_and_write(command: str, name: str, scorer: Scorer, dataset: Dataset, ks: tuple[int, ...],
                     validation: float, metrics: Path, per_user: Path, chosen: dict[str, Any],
                     started: float) -> None:
    from multvae.metrics import metric_names, score_heldout, val_key
    from multvae.results import summarize, write_result

    names = metric_names(ks)
    table = score_heldout(scorer, dataset.test, ks)
    table.insert(1, "seed", BASELINE_SEED)
    summary = summarize(name, "baseline", table, names, {val_key(ks): validation}, chosen=chosen)
    write_result(summary, table, metrics, per_user)
    shown = ", ".join(f"{m} {v:.4f}" for m, v in summary.metrics.items())
    typer.echo(f"{command}: {shown} on {summary.test_users:,} test users "
               f"({time.perf_counter() - started:.1f}s) -> {metrics}")


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
    from multvae.baselines import popularity_scorer
    from multvae.config import load_config
    from multvae.metrics import metric_names, score_heldout

    started = time.perf_counter()
    ks = load_config(params).eval.ks
    dataset = _load(data, ks)
    scorer = popularity_scorer(dataset.train)
    val = float(score_heldout(scorer, dataset.validation, ks)[metric_names(ks)[0]].mean())
    _score_and_write("popularity", "most_popular", scorer, dataset, ks, val, metrics, per_user, {}, started)


@user_errors
def ease(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/ease.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/ease.parquet"),
) -> None:
    """EASE (Steck 2019): lambda from baselines.ease_lambdas by validation NDCG, then the test users."""
    from multvae.baselines import fit_ease, linear_scorer
    from multvae.config import load_config

    started = time.perf_counter()
    cfg = load_config(params)
    dataset = _load(data, cfg.eval.ks)
    fit = fit_ease(dataset.train, dataset.validation, cfg.baselines.ease_lambdas, cfg.eval.ks)
    chosen = {"lambda": fit.lam, "lambda_grid": {f"{lam:g}": v for lam, v in fit.validation.items()}}
    typer.echo(f"ease: lambda {fit.lam:g} chosen on validation ({fit.weights.dtype})")
    _score_and_write("ease", "ease", linear_scorer(fit.weights), dataset, cfg.eval.ks,
                     fit.validation[fit.lam], metrics, per_user, chosen, started)
