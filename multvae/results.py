"""A result of the study, as the evaluate and baseline stages write it and the aggregate stage reads
it: one summary JSON (test means, validation score, per-seed values) and one per-user table.

One typed place builds and checks both, so a Mult-VAE variant and a baseline are rows of the same
kind and the aggregate stage can trust what it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from multvae.atomic import write_json, write_parquet
from multvae.errors import MultVAEError

Kind = Literal["vae", "baseline"]
KINDS: tuple[Kind, ...] = ("vae", "baseline")
# Per-user means and the summary are both averages of the same values; more than float32
# rounding between them means the two files come from different runs.
MEAN_TOLERANCE = 1e-4


class ResultError(MultVAEError):
    """A result file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Summary:
    """Test metrics of one system averaged over users (and over seeds for a Mult-VAE variant)."""

    variant: str
    kind: Kind
    metrics: dict[str, float]  # metric name -> mean over test users (and seeds)
    validation: dict[str, float]  # val_<metric> -> the validation score that selected the model
    test_users: int
    # fold -> that fold's validation score (over its seeds): each fold's tuning choice uses its own
    validation_by_fold: dict[str, float] = field(default_factory=dict)
    folds: tuple[int, ...] = (0,)  # the folds whose test users are in the results
    best_epoch: int | None = None  # a Mult-VAE variant's, of its first seed (on its first fold)
    epochs_trained: int | None = None  # of the same run
    diverged: tuple[str, ...] = ()  # "fold k seed s: where the loss went non-finite", per such run
    seeds: dict[str, dict[str, float]] = field(default_factory=dict)  # seed -> metrics, epochs
    chosen: dict[str, Any] = field(default_factory=dict)  # a baseline's selected hyper-parameters

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variant": self.variant, "kind": self.kind, **self.metrics, **self.validation,
                               "test_users": self.test_users, "folds": list(self.folds),
                "validation_by_fold": self.validation_by_fold}
        if self.best_epoch is not None:
            out.update(best_epoch=self.best_epoch, epochs_trained=self.epochs_trained,
                       diverged=list(self.diverged))
        if self.seeds:
            out["seeds"] = self.seeds
        out.update(self.chosen)
        return out


def per_user_rows(scores: pd.DataFrame, user_ids: np.ndarray, fold: int, seed: int) -> pd.DataFrame:
    """One run's per-user test metrics (`metrics.score_heldout`'s table) keyed by userId, which is
    the same in every fold, with the run's fold and seed: the per-user table's layout."""
    rows = scores.drop(columns="user")
    rows.insert(0, "userId", user_ids)
    rows.insert(1, "fold", fold)
    rows.insert(2, "seed", seed)
    return rows


def summarize(variant: str, kind: Kind, per_user: pd.DataFrame, metrics: list[str],
              validation_by_fold: dict[int, float], epochs: dict[int, tuple[int, int]] | None = None,
              diverged: list[str] | None = None, chosen: dict[str, Any] | None = None) -> Summary:
    """The summary of a per-user table (columns userId, fold, seed, *metrics): means over users,
    per seed and over seeds; `validation_by_fold` is each fold's validation score (key metric, over
    its seeds) and the summary's validation their mean; `epochs` maps a Mult-VAE variant's seeds
    to their (selected, trained) epochs and `diverged` names its runs that stopped early. Every user
    is a test user in one fold only, so a seed's rows hold each user once."""
    repeated = per_user.duplicated(["userId", "seed"])
    if repeated.any():
        user, fold, seed = (int(v) for v in per_user.loc[repeated, ["userId", "fold", "seed"]].iloc[0])
        raise ResultError(f"{variant}: user {user} is a test user in more than one fold (again in fold "
                          f"{fold}, seed {seed}); the folds must partition the users")
    by_seed = per_user.groupby("seed")[metrics].mean()
    seeds: dict[str, dict[str, float]] = {}
    if kind == "vae":
        for seed, row in by_seed.iterrows():
            best, trained = (epochs or {})[int(str(seed))]
            seeds[str(seed)] = {**{m: float(row[m]) for m in metrics}, "best_epoch": int(best),
                                "epochs_trained": int(trained)}
    first = next(iter(seeds.values()), None)
    return Summary(
        variant=variant, kind=kind, metrics={m: float(by_seed[m].mean()) for m in metrics},
        validation={f"val_{metrics[0]}": float(sum(validation_by_fold.values()) / len(validation_by_fold))},
        validation_by_fold={str(f): float(v) for f, v in sorted(validation_by_fold.items())},
        test_users=int(per_user["userId"].nunique()),
        folds=tuple(sorted(int(f) for f in per_user["fold"].unique())),
        best_epoch=int(first["best_epoch"]) if first else None,
        epochs_trained=int(first["epochs_trained"]) if first else None, diverged=tuple(diverged or ()),
        seeds=seeds, chosen=chosen or {},
    )


def write_result(summary: Summary, per_user: pd.DataFrame, summary_path: Path, per_user_path: Path) -> None:
    write_parquet(per_user_path, per_user)
    write_json(summary_path, summary.to_json())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def read_summary(path: Path, metrics: list[str]) -> dict[str, Any]:
    """A summary JSON as written by `write_result`, checked; the message names the file."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"{path}: cannot read the metrics file: {exc}") from None
    if not isinstance(summary, dict):
        raise ResultError(f"{path}: expected a JSON object")
    if summary.get("kind") not in KINDS:
        raise ResultError(f"{path}: 'kind' must be one of {', '.join(KINDS)}, got {summary.get('kind')!r}")
    missing = [m for m in metrics if not _is_number(summary.get(m))]
    if missing:
        raise ResultError(f"{path}: missing or non-numeric {', '.join(missing)}")
    by_fold = summary.get("validation_by_fold")
    if not isinstance(by_fold, dict) or not by_fold or not all(_is_number(v) for v in by_fold.values()):
        raise ResultError(f"{path}: needs 'validation_by_fold', each fold's validation score (written by "
                          "this version's evaluate and baseline stages: re-run them)")
    if summary["kind"] == "vae":
        seeds = summary.get("seeds")
        if not isinstance(seeds, dict) or not seeds:
            raise ResultError(f"{path}: a VAE variant needs 'seeds', one entry per training seed")
        for seed, values in seeds.items():
            if not isinstance(values, dict) or not all(_is_number(values.get(m)) for m in metrics):
                raise ResultError(f"{path}: seeds.{seed} lacks one of {', '.join(metrics)}")
    return summary


def read_per_user(path: Path, metrics: list[str], summary: dict[str, Any]) -> pd.DataFrame:
    """Per-user metrics of every run (columns userId, fold, seed, *metrics; sorted by fold, user and
    seed), checked: every user has every seed, and the means agree with the summary's."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ResultError(f"{path}: cannot read the per-user results: {exc}") from None
    missing = [c for c in ("userId", "fold", "seed", *metrics) if c not in frame.columns]
    if missing:
        raise ResultError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty or frame[metrics].isna().any().any():
        raise ResultError(f"{path}: no rows, or missing metric values")
    frame = frame[["userId", "fold", "seed", *metrics]].sort_values(["fold", "userId", "seed"],
                                                                     ignore_index=True)
    if frame.duplicated(["fold", "userId", "seed"]).any():
        raise ResultError(f"{path}: a user appears twice in one fold and seed")
    runs = frame.groupby("fold")["seed"].nunique()
    users = frame.groupby("fold")["userId"].nunique()
    counts = frame.groupby("fold").size()
    if not (counts == runs * users).all():
        raise ResultError(f"{path}: not every test user has a value for every seed of its fold")
    per_user = frame.groupby("userId")[metrics].mean()
    for m in metrics:
        if abs(per_user[m].mean() - summary[m]) > MEAN_TOLERANCE:
            raise ResultError(
                f"{path}: mean {m} {per_user[m].mean():.5f} disagrees with {summary[m]:.5f} in the metrics "
                "file; both should come from the same evaluation run (re-run the variant's evaluate stage)"
            )
    return frame
