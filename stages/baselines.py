"""DVC stages `popularity`, `ease` and `rp3beta`: the comparison table's baselines on the prepared split.

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
    from multvae.config import Params
    from multvae.data import Dataset
    from multvae.metrics import Scorer

BASELINE_SEED = 0  # baselines are deterministic; one "seed" so per-user tables share a schema


def _load(data: Path, ks: tuple[int, ...], folds: tuple[int, ...]) -> dict[int, Dataset]:
    from multvae.data import DataError, load_dataset
    from multvae.layout import fold_dir
    from multvae.metrics import check_cutoffs

    datasets = {}
    for fold in folds:
        where = fold_dir(data, fold)
        dataset = datasets[fold] = load_dataset(where)
        check_cutoffs(ks, dataset.n_items, str(where))
        for role, heldout in (("validation", dataset.validation), ("test", dataset.test)):
            if heldout.users.size == 0:
                raise DataError(f"{where}: the {role} split has no users; check data.heldout_users")
    return datasets


def _score_and_write(read: Params, command: str, name: str, scorers: dict[int, Scorer],
                     datasets: dict[int, Dataset],
                     ks: tuple[int, ...], validation: dict[int, float], metrics: Path, per_user: Path,
                     chosen: dict[str, Any], started: float) -> None:
    """Each fold's test users scored by that fold's scorer, written as one result."""
    import pandas as pd

    from multvae.metrics import metric_names, score_heldout
    from multvae.results import per_user_rows, summarize, write_result

    names = metric_names(ks)
    read.check_unchanged()
    table = pd.concat([per_user_rows(score_heldout(scorers[fold], data.test, ks),
                                     data.user_ids(data.test.users), fold, BASELINE_SEED)
                       for fold, data in datasets.items()], ignore_index=True)
    summary = summarize(name, "baseline", table, names, validation, chosen=chosen)
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
    """Most-popular: rank every item by its number of training users (of each fold)."""
    from multvae.baselines import popularity_scorer
    from multvae.config import load_params
    from multvae.metrics import metric_names, score_heldout

    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    ks = cfg.eval.ks
    datasets = _load(data, ks, cfg.data.folds)
    scorers = {fold: popularity_scorer(d.train) for fold, d in datasets.items()}
    val = {f: float(score_heldout(scorers[f], d.validation, ks)[metric_names(ks)[0]].mean())
           for f, d in datasets.items()}
    _score_and_write(read, "popularity", "most_popular", scorers, datasets, ks, val, metrics, per_user,
                     {"tuning_budget": 1}, started)


def _per_fold(datasets: dict[int, Any], values: dict[int, Any]) -> Any:
    """One fold: the value; several: a mapping by fold (its keys strings, as JSON needs)."""
    return next(iter(values.values())) if len(datasets) == 1 else {str(f): v for f, v in values.items()}


@user_errors
def ease(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/ease.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/ease.parquet"),
) -> None:
    """EASE (Steck 2019): λ searched on each fold's validation NDCG (baselines.ease_lambdas, extended
    past a winning edge and refined around the peak), then the test users."""
    from multvae.baselines import fit_ease, linear_scorer
    from multvae.config import load_params

    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    settings = cfg.baselines
    datasets = _load(data, cfg.eval.ks, cfg.data.folds)
    scorers, lambdas, grids, edges, val = {}, {}, {}, {}, {}
    for fold, dataset in datasets.items():
        fit = fit_ease(dataset.train, dataset.validation, settings.ease_lambdas, settings.ease_refine, cfg.eval.ks)
        scorers[fold] = linear_scorer(fit.weights)
        lambdas[fold], edges[fold] = fit.lam, fit.at_edge
        grids[fold] = {f"{lam:.6g}": v for lam, v in sorted(fit.validation.items())}
        val[fold] = fit.validation[fit.lam]
        edge = "; at an edge of the searched range" if fit.at_edge else ""
        typer.echo(f"ease: fold {fold}: λ {fit.lam:.6g} chosen on validation among {len(fit.validation)} "
                   f"values ({fit.weights.dtype}){edge}")
    chosen = {"lambda": _per_fold(datasets, lambdas), "lambda_grid": _per_fold(datasets, grids),
              "at_edge": _per_fold(datasets, edges),
              "tuning_budget": max(len(g) for g in grids.values())}
    _score_and_write(read, "ease", "ease", scorers, datasets, cfg.eval.ks, val, metrics, per_user, chosen,
                     started)


@user_errors
def rp3beta(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/rp3beta.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/rp3beta.parquet"),
) -> None:
    """RP3β (Paudel et al. 2016): α and β from baselines.rp3_alphas × rp3_betas by each fold's
    validation NDCG, then the test users."""
    from multvae.baselines import fit_rp3beta
    from multvae.config import load_params

    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    settings = cfg.baselines
    datasets = _load(data, cfg.eval.ks, cfg.data.folds)
    scorers, alphas, betas, grids, edges, val = {}, {}, {}, {}, {}, {}
    for fold, dataset in datasets.items():
        fit = fit_rp3beta(dataset.train, dataset.validation, settings.rp3_alphas, settings.rp3_betas, cfg.eval.ks)
        scorers[fold], alphas[fold], betas[fold], edges[fold] = fit.scorer, fit.alpha, fit.beta, fit.at_edge
        grids[fold] = {f"{a:g},{b:g}": v for (a, b), v in fit.validation.items()}
        val[fold] = fit.validation[(fit.alpha, fit.beta)]
        edge = "; at an edge of the grid" if fit.at_edge else ""
        typer.echo(f"rp3beta: fold {fold}: α {fit.alpha:g}, β {fit.beta:g} chosen on validation{edge}")
    chosen = {"alpha": _per_fold(datasets, alphas), "beta": _per_fold(datasets, betas),
              "alpha_beta_grid": _per_fold(datasets, grids), "at_edge": _per_fold(datasets, edges),
              "tuning_budget": len(settings.rp3_alphas) * len(settings.rp3_betas)}
    _score_and_write(read, "rp3beta", "rp3beta", scorers, datasets, cfg.eval.ks, val, metrics, per_user, chosen,
                     started)
