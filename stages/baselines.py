"""DVC stages `popularity`, `ease` and `rp3beta`: the comparison table's baselines on the prepared split.

They write the same two files as a Mult-VAE variant (summary JSON, per-user test metrics), so the
aggregate stage and the significance tests treat them like any other row of the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stages.common import DataOption, ParamsOption, distinct_paths, user_errors

if TYPE_CHECKING:
    from multvae.data import Dataset
    from multvae.metrics import Scorer
    from multvae.params import Params

    Tuned = tuple[dict[int, Scorer], dict[int, float], dict[str, Any], dict[int, dict[str, float]]]


@dataclass
class TunedFit:
    """One fold's baseline, tuned on that fold's validation users."""

    scorer: Scorer
    chosen: dict[str, float]  # the selected setting(s), by name (lambda; alpha and beta)
    grid: dict[str, float]  # every setting tried -> its validation score
    at_edge: bool
    validation: float  # the chosen setting's validation score


def _score_and_write(read: Params, command: str, name: str, scorers: dict[int, Scorer],
                     datasets: dict[int, Dataset],
                     ks: tuple[int, ...], validation: dict[int, float], metrics: Path, per_user: Path,
                     chosen: dict[str, Any], started: float, extra: dict[Path, str] | None = None) -> None:
    """Each fold's test users scored by that fold's scorer, written as one result (with `extra`,
    the stage's other outputs, published together)."""
    import pandas as pd

    from multvae.folds import fingerprints
    from multvae.metrics import metric_names, score_heldout
    from multvae.results import BASELINE_SEED, per_user_rows, summarize, write_result

    names = metric_names(ks)
    read.check_unchanged()
    table = pd.concat([per_user_rows(score_heldout(scorers[fold], data.test, ks),
                                     data.user_ids(data.test.users), fold, BASELINE_SEED)
                       for fold, data in datasets.items()], ignore_index=True)
    summary = summarize(name, "baseline", table, names, validation, chosen=chosen)
    write_result(summary, table, metrics, per_user, fingerprints(datasets), extra)
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
    from multvae.folds import load_folds
    from multvae.metrics import metric_names, score_heldout
    from multvae.params import load_params

    distinct_paths({"--params": params, "--data": data}, {"--metrics": metrics, "--per-user": per_user})
    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    ks = cfg.eval.ks
    datasets = load_folds(data, cfg.data.folds, ks)
    scorers = {fold: popularity_scorer(d.train) for fold, d in datasets.items()}
    val = {f: float(score_heldout(scorers[f], d.validation, ks)[metric_names(ks)[0]].mean())
           for f, d in datasets.items()}
    _score_and_write(read, "popularity", "most_popular", scorers, datasets, ks, val, metrics, per_user,
                     {"tuning_budget": 1}, started)


def _per_fold(datasets: dict[int, Any], values: dict[int, Any]) -> Any:
    """One fold: the value; several: a mapping by fold (its keys strings, as JSON needs)."""
    return next(iter(values.values())) if len(datasets) == 1 else {str(f): v for f, v in values.items()}


def _tune_per_fold(command: str, datasets: dict[int, Dataset], fit: Callable[[Dataset], TunedFit]) -> Tuned:
    """A baseline tuned on each fold's own validation users: the scorers, each fold's validation
    score, what the summary records (each setting and the grid by fold, the edge flag, the budget:
    the most settings a fold tried), and each fold's chosen settings."""
    fits = {}
    for fold, dataset in datasets.items():
        fits[fold] = found = fit(dataset)
        shown = ", ".join(f"{name} {value:.6g}" for name, value in found.chosen.items())
        edge = "; at an edge of what was searched" if found.at_edge else ""
        typer.echo(f"{command}: fold {fold}: {shown} chosen on validation among {len(found.grid)} "
                   f"settings{edge}")
    chosen: dict[str, Any] = {name: _per_fold(datasets, {f: x.chosen[name] for f, x in fits.items()})
                              for name in next(iter(fits.values())).chosen}
    chosen.update(grid=_per_fold(datasets, {f: x.grid for f, x in fits.items()}),
                  at_edge=_per_fold(datasets, {f: x.at_edge for f, x in fits.items()}),
                  tuning_budget=max(len(x.grid) for x in fits.values()))
    return ({f: x.scorer for f, x in fits.items()}, {f: x.validation for f, x in fits.items()}, chosen,
            {f: x.chosen for f, x in fits.items()})


@user_errors
def ease(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/ease.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/ease.parquet"),
    choice: Annotated[Path, typer.Option(help="The λ chosen on each fold, for the blend stage.")] = Path(
        "models/ease/lambda.json"),
) -> None:
    """EASE (Steck 2019): λ searched on each fold's validation NDCG (baselines.ease_lambdas, extended
    past a winning edge and refined around the peak), then the test users."""
    from multvae.baselines import fit_ease, linear_scorer
    from multvae.folds import fingerprints, load_folds
    from multvae.handoff import ease_choice
    from multvae.params import load_params

    distinct_paths({"--params": params, "--data": data},
                   {"--metrics": metrics, "--per-user": per_user, "--choice": choice})
    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    settings = cfg.baselines

    def fit(dataset: Dataset) -> TunedFit:
        found = fit_ease(dataset.train, dataset.validation, settings.ease_lambdas, settings.ease_refine,
                         cfg.eval.ks)
        return TunedFit(linear_scorer(found.weights), {"lambda": found.lam},
                        {f"{lam:.6g}": v for lam, v in sorted(found.validation.items())}, found.at_edge,
                        found.validation[found.lam])

    datasets = load_folds(data, cfg.data.folds, cfg.eval.ks)
    scorers, val, chosen, by_fold = _tune_per_fold("ease", datasets, fit)
    handed = ease_choice({f: c["lambda"] for f, c in by_fold.items()},
                         fingerprints(datasets), chosen["tuning_budget"])
    _score_and_write(read, "ease", "ease", scorers, datasets, cfg.eval.ks, val, metrics, per_user, chosen,
                     started, {choice: handed.to_text()})


@user_errors
def rp3beta(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("metrics/variants/rp3beta.json"),
    per_user: Annotated[Path, typer.Option(help="Per-user test metrics (Parquet).")] = Path(
        "metrics/per_user/rp3beta.parquet"),
    choice: Annotated[Path, typer.Option(help="α and β chosen on each fold, for the control blend.")] = Path(
        "models/rp3beta/choice.json"),
) -> None:
    """RP3β (Paudel et al. 2016): α and β from baselines.rp3_alphas × rp3_betas by each fold's
    validation NDCG, then the test users."""
    from multvae.baselines import fit_rp3beta
    from multvae.folds import fingerprints, load_folds
    from multvae.handoff import rp3_choice
    from multvae.params import load_params

    distinct_paths({"--params": params, "--data": data},
                   {"--metrics": metrics, "--per-user": per_user, "--choice": choice})
    started = time.perf_counter()
    read = load_params(params)
    cfg = read.base
    settings = cfg.baselines

    def fit(dataset: Dataset) -> TunedFit:
        found = fit_rp3beta(dataset.train, dataset.validation, settings.rp3_alphas, settings.rp3_betas,
                            cfg.eval.ks)
        return TunedFit(found.scorer, {"alpha": found.alpha, "beta": found.beta},
                        {f"{a:g},{b:g}": v for (a, b), v in found.validation.items()}, found.at_edge,
                        found.validation[(found.alpha, found.beta)])

    datasets = load_folds(data, cfg.data.folds, cfg.eval.ks)
    scorers, val, chosen, by_fold = _tune_per_fold("rp3beta", datasets, fit)
    handed = rp3_choice({f: c["alpha"] for f, c in by_fold.items()},
                        {f: c["beta"] for f, c in by_fold.items()},
                        fingerprints(datasets), chosen["tuning_budget"])
    _score_and_write(read, "rp3beta", "rp3beta", scorers, datasets, cfg.eval.ks, val, metrics, per_user,
                     chosen, started, {choice: handed.to_text()})
