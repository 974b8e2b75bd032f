"""How big a study is before it runs: its training runs, which of them this workspace already has,
and the time the rest will take on this machine, from a short probe of real updates.

The time is the sum over runs of updates × seconds an update (timed per distinct model and
optimiser at the data's shape, on random rows of the data's density) plus one validation pass an
epoch (timed the same way). Evaluation, baselines and the split are left out: on every study
measured here they are a small share of training; the plan says so.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from multvae.config import Config
from multvae.errors import MultVAEError
from multvae.model import MultVAE, SparseRows
from multvae.params import Params
from multvae.sealed import is_sealed
from multvae.training import epoch_count, make_optimizer, train_step, updates_per_epoch

# The paper's ML-20M after its preprocessing (Liang et al. 2018, Table 1: 136,677 users, 20,108
# items, 0.36% dense), less its 10,000 validation and 10,000 test users: the shape of the `paper`
# study before its data is downloaded.
PAPER_ML20M = (116_677, 20_108, 0.0036, 10_000)


class PlanError(MultVAEError):
    """The study's data shape is not known yet."""


@dataclass(frozen=True)
class Shape:
    """One fold's training data: what an update's cost depends on."""

    train_users: int
    items: int
    density: float
    validation_users: int
    source: str  # where the shape was read

    @classmethod
    def of_stats(cls, stats: dict[str, Any], source: str) -> Shape:
        fold = next(iter(stats["folds"].values()))
        return cls(fold["train_users"], fold["items"], fold["train_density"], fold["validation_users"],
                   source)


def find_shape(read: Params, root: Path) -> Shape:
    """The prepared split's shape if it is this study's data, else the study's committed
    statistics, else the paper's ML-20M for the paper's data set."""
    data = read.base.data
    split = root / "data" / "stats.json"
    for path in (split, root / "results" / read.study.name / "stats.json"):
        if path.is_file():
            stats = json.loads(path.read_text())
            if path == split and not is_sealed(stats):  # committed copies may predate the hash
                raise PlanError(f"{path}: its content hash does not match (edited after the prepare stage "
                                "wrote it): rerun `dvc repro -f prepare`")
            folds = stats.get("folds") or {}
            same = stats.get("dataset") == data.dataset or data.dataset == "auto"
            if same and all(str(f) in folds for f in data.folds) and stats.get("kfold") == data.kfold:
                try:
                    return Shape.of_stats(stats, str(path.relative_to(root)))
                except (KeyError, TypeError, StopIteration) as exc:
                    raise PlanError(f"{path}: no training users, items, density or validation users "
                                    f"of a fold ({exc!r}): rerun `dvc repro -f prepare`") from None
    if data.dataset == "ml-20m":
        return Shape(*PAPER_ML20M, source="the paper's ML-20M (Liang et al. 2018, Table 1)")
    raise PlanError(f"no statistics of {data.dataset} with folds {list(data.folds)} in data/stats.json "
                    f"or results/{read.study.name}/stats.json: run `dvc repro prepare` first, then plan "
                    "again")


def runs(read: Params) -> list[tuple[str, int, int]]:
    """(row, seed, fold) of every training run of the study, in dvc.yaml's order."""
    base = read.base
    return [(row, seed, fold) for row in read.rows for seed in base.train.seeds for fold in base.data.folds]


def stage_name(run: tuple[str, int, int]) -> str:
    row, seed, fold = run
    return f"train@{row}-{seed}-{fold}"


def _random_rows(rng: np.random.Generator, users: int, shape: Shape) -> sp.csr_matrix:
    per_user = max(1, round(shape.density * shape.items))
    indices = np.concatenate([rng.choice(shape.items, per_user, replace=False) for _ in range(users)])
    indptr = np.arange(users + 1) * per_user
    return sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(users, shape.items))


@dataclass(frozen=True)
class Probe:
    """Seconds an update and seconds a validation pass of one model and optimiser."""

    update: float
    validation: float


def probe(cfg: Config, shape: Shape, updates: int, device: torch.device) -> Probe:
    """Median of `updates` timed updates (after one untimed) on random rows of the data's density,
    at the configured batch size, and one validation pass over as many users as validate."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    batch = min(cfg.train.batch_size, shape.train_users)
    rows = SparseRows(_random_rows(rng, batch, shape), device)
    model = MultVAE(shape.items, cfg.model).to(device)
    optimizer = make_optimizer(model, cfg)
    sample = rows.batch(np.arange(batch))
    times = []
    for step in range(updates + 1):
        start = time.perf_counter()
        train_step(model, optimizer, sample, cfg, step, 10 * updates).sum().item()
        times.append(time.perf_counter() - start)
    model.eval()
    scored = min(shape.validation_users, 2_000)
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, scored, batch):
            model(rows.batch(np.arange(min(batch, scored - first)) % batch))[0].sum().item()
    validation = (time.perf_counter() - start) * shape.validation_users / scored
    return Probe(statistics.median(times[1:]), validation)


def _probe_key(cfg: Config) -> tuple:
    return astuple(cfg.model), astuple(cfg.optim), cfg.train.batch_size


def run_seconds(cfg: Config, shape: Shape, measured: Probe) -> float:
    """One run: its updates (epochs × updates an epoch at this many users) and a validation an epoch."""
    epochs = epoch_count(cfg, shape.train_users)
    return epochs * (updates_per_epoch(cfg, shape.train_users) * measured.update + measured.validation)


def estimate(read: Params, shape: Shape, pending: set[str], updates: int,
             device: torch.device) -> tuple[dict[str, Probe], dict[str, float], float]:
    """Per row its probe and the seconds one run takes; and the seconds the pending runs need."""
    probes: dict[tuple, Probe] = {}
    by_row: dict[str, Probe] = {}
    each: dict[str, float] = {}
    for row in read.rows:
        cfg = read.config(row)
        key = _probe_key(cfg)
        if key not in probes:
            probes[key] = probe(cfg, shape, updates, device)
        by_row[row] = probes[key]
        each[row] = run_seconds(cfg, shape, probes[key])
    left = sum(each[row] for row, *_ in (r for r in runs(read) if stage_name(r) in pending))
    return by_row, each, left


def duration(seconds: float) -> str:
    """4 min, 3.2 h, 5.1 days: the unit a reader plans in."""
    if seconds <= 0:
        return "nothing"
    if seconds < 90 * 60:
        return f"{max(1, math.ceil(seconds / 60))} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
