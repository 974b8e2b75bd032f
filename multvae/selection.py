"""Choices made on validation users, never test users: each tuning group's member and the best
baseline, chosen in each fold on that fold's own validation users, and the row that stands for
each choice (every fold's test users scored by that fold's choice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multvae.config import BASELINES, BEST_BASELINE
from multvae.grids import edge_axes
from multvae.results import ResultError
from multvae.rows import Result


@dataclass(frozen=True)
class Choice:
    """A tuning group's selection: each member's validation score (mean over folds) and the member
    each fold chose on its own validation users."""

    scores: dict[str, float]
    by_fold: dict[int, str]
    edges: tuple[str, ...] = ()  # settings on which a fold's choice is the smallest or largest tried
    diverged: dict[str, int] = field(default_factory=dict)  # member -> its runs that diverged


def group_budget(members: list[Result]) -> int:
    """Settings a group's choice tried on validation: each member's own (a blend's weights), plus what
    they inherit from a shared choice (EASE's λ) counted once."""
    own, inherited = 0, 0
    for r in members:
        parts = r.summary.get("budget_parts") or {}
        shared = sum(v for k, v in parts.items() if k != "weight")
        own += int(r.summary.get("tuning_budget", 1)) - shared
        inherited = max(inherited, shared)
    return own + inherited


def _tuned_row(group: str, members: list[Result], by_fold: dict[int, str], metrics: list[str],
               edges: tuple[str, ...]) -> Result:
    """The group's row: in each fold, the test users of the member that fold chose."""
    first = next(r for r in members if r.name == by_fold[min(by_fold)])
    chosen = sorted(set(by_fold.values()))
    text = chosen[0] if len(chosen) == 1 else "by fold: " + ", ".join(by_fold[f] for f in sorted(by_fold))
    if edges:
        text += f"; at grid edge: {', '.join(edges)}"
    by_name = {r.name: r for r in members}
    diverged = [d for f, m in sorted(by_fold.items()) for d in by_name[m].summary.get("diverged", [])
                if d.startswith(f"fold {f} ")]
    summary = {**first.summary, "chosen": text, "tuning_budget": group_budget(members), "diverged": diverged}
    summary.pop("budget_parts", None)
    tables = {r.name: r.per_user for r in members if r.per_user is not None}
    logs = {r.name: r.curves for r in members if r.curves is not None}
    per_user = curves = None
    if len(tables) == len(members):
        per_user = pd.concat([tables[m][tables[m]["fold"] == f] for f, m in sorted(by_fold.items())],
                             ignore_index=True)
        by_seed = per_user.groupby("seed")[metrics].mean()
        summary.update({m: float(by_seed[m].mean()) for m in metrics})
        summary["seeds"] = {} if first.kind != "vae" else {
            str(seed): {**{m: float(row[m]) for m in metrics},
                        **{k: first.summary["seeds"].get(str(seed), {}).get(k)
                           for k in ("best_epoch", "epochs_trained")}}
            for seed, row in by_seed.iterrows()}
    if len(logs) == len(members):
        curves = pd.concat([logs[m][logs[m]["fold"] == f] for f, m in sorted(by_fold.items())],
                           ignore_index=True)
    return Result(group, first.kind, summary, per_user, curves)


def best_by_fold(candidates: list[Result]) -> dict[int, str]:
    """Each fold's member with the best validation score on that fold's own validation users."""
    by_fold = {}
    for fold in sorted(int(f) for f in candidates[0].summary["validation_by_fold"]):
        scores = {r.name: float(r.summary["validation_by_fold"].get(str(fold), np.nan)) for r in candidates}
        if any(np.isnan(v) for v in scores.values()):
            raise ResultError(f"{', '.join(scores)}: run on different folds; re-run them")
        by_fold[fold] = max(scores, key=lambda name: scores[name])  # first member on ties
    return by_fold


def best_baseline(results: list[Result], metrics: list[str]) -> tuple[list[Result], Choice | None]:
    """The baseline that `best_baseline` comparisons take, chosen in each fold on its own validation
    users like a tuning group. Where the folds agree, it is that baseline's row; where they do not,
    a row `best_baseline` is added: each fold's test users scored by that fold's choice."""
    candidates = [r for r in results if r.name in BASELINES and r.per_user is not None]
    if not candidates:
        return results, None
    by_fold = best_by_fold(candidates)
    choice = Choice({r.name: float(r.summary[f"val_{metrics[0]}"]) for r in candidates}, by_fold)
    if len(set(by_fold.values())) == 1:
        return results, choice
    return [*results, _tuned_row(BEST_BASELINE, candidates, by_fold, metrics, ())], choice


def select_tuned(results: list[Result], tuning: dict[str, tuple[str, ...]], metrics: list[str],
                 keep: frozenset[str] = frozenset(),
                 settings: dict[str, dict[str, dict[str, Any]]] | None = None,
                 ) -> tuple[list[Result], dict[str, Choice]]:
    """Each tuning group (params.yaml `tuning:`) becomes one row, in place of its members except
    those in `keep` (the references of comparisons: the original model stays a row when it is also a
    point of a grid). Each fold chooses the member with the best validation score on its own
    validation users (`val_<key>` of that fold; the test users are never looked at), so under K-fold
    no fold's test users steer the choice scored on them. `settings` (group -> member -> the settings
    its members vary, `grids.varying`) flags a choice at an end of its grid."""
    key = metrics[0]
    by_name = {r.name: r for r in results}
    choices: dict[str, Choice] = {}
    chosen: dict[str, Result] = {}
    for group, members in tuning.items():
        present = [by_name[m] for m in members if m in by_name]
        if not present:
            continue
        try:
            by_fold = best_by_fold(present)
        except ResultError:
            raise ResultError(f"tuning.{group}: the members were run on different folds; "
                              "re-run them") from None
        grid = (settings or {}).get(group)
        edges = tuple(sorted({axis for member in set(by_fold.values())
                              for axis in (edge_axes(grid, member) if grid else [])}))
        diverged = {r.name: len(r.summary["diverged"]) for r in present if r.summary.get("diverged")}
        scores = {r.name: float(r.summary[f"val_{key}"]) for r in present}
        choices[group] = Choice(scores, by_fold, edges, diverged)
        chosen[present[-1].name] = _tuned_row(group, present, by_fold, metrics, edges)
    hidden = {m for members in tuning.values() for m in members} - keep
    rows = []
    for r in results:
        if r.name not in hidden:
            rows.append(r)
        if r.name in chosen:
            rows.append(chosen[r.name])
    return rows, choices
