"""A result of the study, as the evaluate and baseline stages write it and the aggregate stage reads
it: one summary JSON (test means, validation score, per-seed values) and one per-user table.

One typed place builds and checks both, so a Mult-VAE variant and a baseline are rows of the same
kind. Each result records its provenance: the row it is, the fingerprint of each fold's split it was
computed on and the content hash of its per-user table; the reader checks all three against what
the study expects, so a file of another row, another split or another run is refused by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from multvae.atomic import published
from multvae.errors import MultVAEError
from multvae.sealed import is_sealed, seal

Kind = Literal["vae", "baseline"]
KINDS: tuple[Kind, ...] = ("vae", "baseline")
# Per-user means and the summary are both averages of the same values; more than float32
# rounding between them means the two files come from different runs.
MEAN_TOLERANCE = 1e-4
BASELINE_SEED = 0  # baselines are deterministic; one "seed" so per-user tables share a schema


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


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) of a table's column names and values, independent of its file."""
    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def write_result(summary: Summary, per_user: pd.DataFrame, summary_path: Path, per_user_path: Path,
                 split: dict[int, str], extra: dict[Path, str] | None = None) -> None:
    """Both files, published together (with `extra`, other text outputs of the stage), the summary
    naming the split of each fold (`split`: fold -> the prepared data's fingerprint) and the per-user
    table's content hash."""
    payload = seal({**summary.to_json(), "split": {str(k): v for k, v in sorted(split.items())},
                    "per_user_sha256": content_hash(per_user)})
    with published() as out:
        per_user.to_parquet(out.file(per_user_path), index=False)
        out.file(summary_path).write_text(json.dumps(payload, indent=2) + "\n")
        for path, text in (extra or {}).items():
            out.file(path).write_text(text)


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
    for key in ("variant", "per_user_sha256"):
        if not isinstance(summary.get(key), str):
            raise ResultError(f"{path}: no '{key}' (written by an older version or by hand); rerun its stage")
    if not is_sealed(summary):
        raise ResultError(f"{path}: its content hash does not match (edited after its stage wrote it, or "
                          f"written by an older version); rerun the stage of {summary['variant']}")
    split = summary.get("split")
    if not isinstance(split, dict) or not split or not all(isinstance(v, str) for v in split.values()):
        raise ResultError(f"{path}: no 'split' (the fingerprint of each fold's data it was computed on); "
                          "rerun its stage")
    folds = summary.get("folds")
    if not isinstance(folds, list) or not folds or not all(type(f) is int for f in folds):
        raise ResultError(f"{path}: 'folds' must be a non-empty list of fold numbers, got {folds!r}")
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
            if not seed.isdigit():
                raise ResultError(f"{path}: seeds.{seed}: a seed must be a whole number")
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
    if content_hash(frame) != summary["per_user_sha256"]:
        raise ResultError(f"{path}: not the per-user table its metrics file was written with (content "
                          f"{content_hash(frame)}, the metrics file says {summary['per_user_sha256']}); "
                          f"another run's or another row's file? rerun the stage of {summary['variant']}")
    values = frame[metrics].to_numpy(np.float64)
    if frame.empty or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ResultError(f"{path}: no rows, or metric values missing, non-finite or outside [0, 1]")
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


@dataclass(frozen=True)
class Expected:
    """What the study's params and its split say every result must have been computed with."""

    folds: tuple[int, ...]
    seeds: tuple[int, ...]  # a Mult-VAE row's training seeds
    split: dict[str, str]  # fold -> fingerprint of the prepared data (data/stats.json)
    test_users: dict[str, int]  # fold -> its test users (data/stats.json)
    test_to_train: float = 0.0  # a fold's test users over its training users (the K-fold correction)

    @classmethod
    def of_study(cls, folds: tuple[int, ...], seeds: tuple[int, ...], stats: dict[str, Any],
                 where: Path) -> Expected:
        """From the study's data.folds and train.seeds and the split's statistics (data/stats.json)."""
        if not is_sealed(stats):
            raise ResultError(f"{where}: its content hash does not match (edited after the prepare stage "
                              "wrote it, or written by an older version): rerun `dvc repro -f prepare`")
        folds_stats = stats.get("folds")
        by_fold: dict[str, Any] = folds_stats if isinstance(folds_stats, dict) else {}
        split, users = {}, {}
        for fold in folds:
            entry = by_fold.get(str(fold))
            if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str) \
                    or type(entry.get("test_users")) is not int:
                raise ResultError(f"{where}: no fingerprint or test-user count of fold {fold} (written by an "
                                  "older prepare stage, or data.folds changed): rerun `dvc repro prepare`")
            split[str(fold)], users[str(fold)] = entry["fingerprint"], entry["test_users"]
        train = [by_fold[str(f)].get("train_users") for f in folds]
        if not all(type(n) is int and n > 0 for n in train):
            raise ResultError(f"{where}: no training-user count for each of folds {list(folds)}: rerun "
                              "`dvc repro prepare`")
        ratio = sum(users.values()) / sum(train)
        return cls(folds=tuple(folds), seeds=tuple(seeds), split=split, test_users=users, test_to_train=ratio)


def check_provenance(path: Path, name: str, summary: dict[str, Any], expected: Expected) -> None:
    """The summary at `path` is row `name`'s, on the study's folds, seeds and split."""
    if summary["variant"] != name:
        raise ResultError(f"{path}: holds the results of {summary['variant']!r}, not {name!r} (a file "
                          f"renamed or copied?); rerun the stage of {name}")
    folds = [int(f) for f in summary.get("folds") or []]
    if folds != list(expected.folds):
        raise ResultError(f"{path}: computed on folds {folds}, the study runs data.folds "
                          f"{list(expected.folds)}; rerun the stage of {name}")
    split = {k: summary["split"].get(k) for k in expected.split}
    if split != expected.split:
        raise ResultError(f"{path}: computed on another split (fingerprints {summary['split']}, the "
                          f"prepared data's {expected.split}); rerun the stage of {name}")
    seeds = sorted(int(s) for s in summary.get("seeds") or {})
    if not set(seeds) <= set(expected.seeds):
        raise ResultError(f"{path}: trained with seeds {seeds}, the study's train.seeds are "
                          f"{sorted(expected.seeds)}; rerun the stage of {name}")


def check_test_users(path: Path, name: str, per_user: pd.DataFrame, expected: Expected) -> None:
    """Every fold's test users are as many as the split's statistics count."""
    found = {str(k): int(n) for k, n in per_user.groupby("fold")["userId"].nunique().items()}
    if found != expected.test_users:
        raise ResultError(f"{path}: test users by fold {found}, the split's statistics say "
                          f"{expected.test_users}; rerun the stage of {name}, or prepare if the statistics "
                          "are what changed")
