"""Every row of a study read back from the stage outputs (summary, per-user results, training logs),
each checked to be that row's, on the study's folds, seeds and split, and all on the same test users:
what the table, the claims and the figures are computed from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multvae.config import BASELINES, CONTROL_BLEND
from multvae.layout import run_path
from multvae.live_log import LogError, read_log
from multvae.results import (
    Expected,
    ResultError,
    check_provenance,
    check_test_users,
    read_per_user,
    read_summary,
)
from multvae.stats import Runs

SHALLOW = (*BASELINES, CONTROL_BLEND)  # the rows every study has: the baselines and their blend


@dataclass(frozen=True)
class Result:
    name: str
    kind: str
    summary: dict[str, Any]
    per_user: pd.DataFrame | None  # userId, fold, seed, metrics: every test user of every run
    curves: pd.DataFrame | None  # the per-epoch training log, every fold and seed

    @property
    def stochastic(self) -> bool:
        """Retraining gives other numbers (a Mult-VAE row), unlike a deterministic baseline."""
        return self.kind == "vae"

    def runs(self, metric: str) -> Runs:
        """Per fold, the users × seeds matrix of `metric` (users sorted by id, as in every row)."""
        if self.per_user is None:
            raise ResultError(f"{self.name}: no per-user results")
        return {int(fold): part.pivot(index="userId", columns="seed", values=metric).to_numpy(np.float64)
                for fold, part in self.per_user.groupby("fold")}


def _read_curves(curves_dir: Path, name: str, metrics: list[str], folds: list[int],
                 seeds: list[int]) -> pd.DataFrame | None:
    """The per-epoch logs of a variant's runs (<curves_dir>/<name>/fold-<k>/seed-<s>, DVCLive's
    layout), stacked; None if there are none."""
    runs = [(fold, seed, run_path(curves_dir, name, fold, seed)) for fold in folds for seed in seeds]
    if not any(path.is_dir() for _, _, path in runs):
        return None
    try:
        curves = pd.concat([read_log(path, fold, seed) for fold, seed, path in runs], ignore_index=True)
    except LogError as exc:
        raise ResultError(str(exc)) from None
    missing = [c for c in ("epoch", "beta", *(f"val_{m}" for m in metrics)) if c not in curves.columns]
    if missing:
        raise ResultError(f"{curves_dir / name}: missing column(s) {', '.join(missing)}")
    return curves


def _check_logs(curves: pd.DataFrame, curves_dir: Path, name: str, summary: dict[str, Any],
                fold: int, key: str) -> None:
    """Each seed's log on `fold` (the first the study runs, whose run the summary describes) is that
    run's: as many epochs as it trained, its best validation `key` at the epoch it selected, and
    those scores' mean the fold's validation score. A log of another run or row is refused."""
    best_scores = []
    for seed, run in (summary.get("seeds") or {}).items():
        trained = run.get("epochs_trained")
        if trained is None:
            continue
        log = curves[(curves["fold"] == fold) & (curves["seed"] == int(seed))].reset_index(drop=True)
        where = run_path(curves_dir, name, fold, int(seed))
        scores = log[f"val_{key}"].to_numpy(np.float64)
        if len(log) != trained or not len(log):
            raise ResultError(f"{where}: {len(log)} epochs logged, the model in its results trained "
                              f"{trained} (a log of another run?); rerun the train stage of {name}")
        best = int(log["epoch"].iloc[int(np.nanargmax(scores))])
        if best != run.get("best_epoch"):
            raise ResultError(f"{where}: its best validation {key} is at epoch {best}, the model in its "
                              f"results was selected at epoch {run.get('best_epoch')} (a log of another "
                              f"run?); rerun the train stage of {name}")
        best_scores.append(float(np.nanmax(scores)))
    by_fold = (summary.get("validation_by_fold") or {}).get(str(fold))
    if best_scores and by_fold is not None and abs(float(np.mean(best_scores)) - by_fold) > 1e-9:
        raise ResultError(f"{curves_dir / name}: the logs' best validation {key} average "
                          f"{np.mean(best_scores):.6f}, its results say {by_fold:.6f} (logs of another "
                          f"row?); rerun the train stage of {name}")


# What a blend takes from each baseline it blends: (display name, {setting: symbol}).
_BLENDED_SETTINGS = {"ease": ("EASE", {"lambda": "λ"}), "rp3beta": ("RP3β", {"alpha": "α", "beta": "β"})}


def _check_blends(results: list[Result], metrics_dir: Path) -> None:
    """A blend row was computed at the settings its baselines chose (EASE's λ, RP3β's α and β), as
    their own results record them."""
    by_name = {r.name: r for r in results}
    for r in results:
        for part in r.summary.get("blend_of") or ():
            source = by_name.get(part)
            if source is None:
                continue
            owner, settings = _BLENDED_SETTINGS.get(part, (part, {}))
            for setting, symbol in settings.items():
                if r.summary.get(setting) != source.summary.get(setting):
                    raise ResultError(f"{metrics_dir / (r.name + '.json')}: blended at {symbol} "
                                      f"{r.summary.get(setting)}, {owner}'s results chose "
                                      f"{source.summary.get(setting)}; rerun the stage that writes "
                                      f"{r.name} (`dvc repro`)")


def _test_users(per_user: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(per_user[["fold", "userId"]].drop_duplicates())


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise ResultError(f"{path} not found: {what}")


def extra_files(metrics_dir: Path, order: list[str] | tuple[str, ...]) -> list[Path]:
    """Result files in metrics_dir that are neither a row of `order` nor a baseline."""
    return [p for p in sorted(Path(metrics_dir).glob("*.json"))
            if p.stem not in order and p.stem not in SHALLOW]


def load_results(metrics_dir: Path, per_user_dir: Path, curves_dir: Path, metrics: list[str],
                 order: list[str] | tuple[str, ...], expected: Expected) -> list[Result]:
    """The `<name>.json` files of metrics_dir with their per-user results and training logs, each
    checked to be that row's, computed on the study's folds, seeds and split (`expected`).

    Only the rows of `order` (the study's) and the baselines, in that order: the folder also holds the
    files of rows that other studies ran (`extra_files` names them). A row of `order` without a file
    is absent (the caller names it): a partial table while other rows still train is useful.
    """
    metrics_dir, per_user_dir, curves_dir = Path(metrics_dir), Path(per_user_dir), Path(curves_dir)
    _require_dir(metrics_dir, "run the evaluate and baseline stages first")
    _require_dir(per_user_dir, "run the evaluate and baseline stages first (they write per-user results)")
    _require_dir(curves_dir, "run the train stages first (they write the training logs)")
    paths = {p.stem: p for p in sorted(metrics_dir.glob("*.json"))
             if p.stem in order or p.stem in SHALLOW}
    if not paths:
        raise ResultError(f"{metrics_dir}: no <variant>.json metrics files")
    results = []
    for name, path in paths.items():
        summary = read_summary(path, metrics)
        check_provenance(path, name, summary, expected)
        user_path = per_user_dir / f"{name}.parquet"
        per_user = read_per_user(user_path, metrics, summary) if user_path.is_file() else None
        if per_user is not None:
            check_test_users(user_path, name, per_user, expected)
        curves = _read_curves(curves_dir, name, metrics, [int(f) for f in summary["folds"]],
                              [int(s) for s in summary.get("seeds") or {}])
        if curves is not None:
            _check_logs(curves, curves_dir, name, summary, expected.folds[0], metrics[0])
        results.append(Result(name=name, kind=summary["kind"], summary=summary, per_user=per_user,
                              curves=curves))
    _check_blends(results, metrics_dir)
    rank = [*order, *SHALLOW]
    results.sort(key=lambda r: (r.kind == "baseline", rank.index(r.name) if r.name in rank else len(rank),
                                r.name))
    scored = [(r, _test_users(r.per_user)) for r in results if r.per_user is not None]
    for r, users in scored[1:]:
        if not users.equals(scored[0][1]):
            raise ResultError(
                f"{per_user_dir / f'{r.name}.parquet'} and {per_user_dir / f'{scored[0][0].name}.parquet'} "
                "hold different test users; paired comparisons need the same users (re-run evaluate)"
            )
    return results
