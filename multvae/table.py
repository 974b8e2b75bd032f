"""Every variant's and baseline's test results side by side: the study's Table IX with intervals.

A point estimate alone cannot say whether an ablation changed anything, so each mean carries an
interval over test users and training runs, and each comparison declared in params.yaml
(`comparisons:`, one Holm family each) a paired test with its raw and adjusted p-values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multvae.config import (
    BASELINES,
    BEST_BASELINE,
    CONTROL_BLEND,
    EVERY_VAE_ROW,
    ComparisonConfig,
    EvalConfig,
)
from multvae.grids import edge_axes
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
from multvae.stats import DOF_BOUND, Estimate, Runs, holm, mean_estimate, paired_difference

SIGNIFICANT = "*"
UNCOUNTED = "†"  # a stochastic row trained once on one fold: its run-to-run noise is unknown
LATE_MARK = "⚑"  # runs that selected an epoch near the end of their training
POWER = 0.8
SHALLOW = (*BASELINES, CONTROL_BLEND)  # the rows every study has: the baselines and their blend
_METRIC_TITLES = {"ndcg": "NDCG", "recall": "Recall"}


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


def label(name: str, labels: dict[str, str]) -> str:
    """The display name from report.labels in params.yaml, else the variant's own name."""
    return labels.get(name, name)


def metric_title(metric: str) -> str:
    kind, _, k = metric.partition("@")
    return f"{_METRIC_TITLES.get(kind, kind)}@{k}"


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


def _seed_values(result: Result, metric: str) -> list[float]:
    return [float(v[metric]) for v in (result.summary.get("seeds") or {}).values()]


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


def _best_by_fold(candidates: list[Result]) -> dict[int, str]:
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
    by_fold = _best_by_fold(candidates)
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
            by_fold = _best_by_fold(present)
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


def _chosen_setting(summary: dict[str, Any]) -> str:
    """A tuned row's choice on validation: a group's member, a blend's weight and EASE's λ, RP3β's α
    and β (one value, or each fold's where they differ), flagged when it is at an edge of what was
    searched."""
    if summary.get("chosen"):
        return str(summary["chosen"])

    def values(name: str) -> str:
        value = summary.get(name)
        if isinstance(value, dict):
            distinct = sorted({float(v) for v in value.values()})
            if len(distinct) == 1:
                return f"{distinct[0]:.4g}"
            return "by fold " + "/".join(f"{float(v):.4g}" for v in value.values())
        return "" if value is None else f"{float(value):.4g}"

    symbols = (("weight", "w"), ("lambda", "λ"), ("alpha", "α"), ("beta", "β"))
    parts = [f"{symbol} = {values(name)}" for name, symbol in symbols if summary.get(name) is not None]
    edge = summary.get("at_edge")
    if edge is True or (isinstance(edge, dict) and any(edge.values())):
        parts.append("at grid edge")
    return ", ".join(parts)


@dataclass(frozen=True)
class Family:
    """One declared comparison family as run: its resolved reference and the rows it compared."""

    name: str
    reference: str
    metric: str
    rows: tuple[str, ...]
    same_runs: tuple[tuple[str, str], ...] = ()  # (row left out, the row or reference it repeats)


def _same_runs(a: Result, b: Result) -> bool:
    """Two rows built from the same runs (a tuning group and the member it chose): one comparison."""
    assert a.per_user is not None and b.per_user is not None
    return a.per_user.reset_index(drop=True).equals(b.per_user.reset_index(drop=True))


def resolve_family(name: str, family: ComparisonConfig, rows: list[Result], key: str,
                   metrics: list[str]) -> Family | None:
    """The family's reference and rows among the table's rows with per-user results; None when the
    study does not run its reference, any of its rows, or its metric."""
    scored = {r.name: r for r in rows if r.per_user is not None}
    metric = family.metric or key
    reference = family.reference
    if reference == BEST_BASELINE and BEST_BASELINE not in scored:  # the folds agree (`best_baseline`)
        baselines = [r for r in scored.values() if r.name in BASELINES]
        if not baselines:
            return None
        chosen = set(_best_by_fold(baselines).values())
        if len(chosen) > 1:
            raise ResultError(f"comparisons.{name}: the folds chose different baselines "
                              f"({', '.join(sorted(chosen))}) and no best_baseline row stands for them "
                              "(add it with table.best_baseline)")
        reference = chosen.pop()
    if reference not in scored or metric not in metrics:
        return None
    wanted = [r.name for r in rows if r.kind == "vae"] if EVERY_VAE_ROW in family.rows else list(family.rows)
    members: list[str] = []
    repeats: list[tuple[str, str]] = []
    for n in dict.fromkeys(wanted):
        if n not in scored or n == reference:
            continue
        twin = next((m for m in (reference, *members) if _same_runs(scored[n], scored[m])), None)
        if twin is None:
            members.append(n)
        else:  # the same comparison again would count twice in Holm's family
            repeats.append((n, twin))
    return Family(name, reference, metric, tuple(members), tuple(repeats)) if members else None


CONTROL_FAMILY = "vs_control_blend"  # every blend of the study against RP3β + EASE, one Holm family


def with_control_family(comparisons: dict[str, ComparisonConfig], blends: list[str],
                        tuning: dict[str, tuple[str, ...]]) -> dict[str, ComparisonConfig]:
    """The declared families, and each of the study's blends (its blend rows, or the tuning groups
    of them that stand in their place) against the control blend: what a deep model adds beyond
    blending two shallow ones."""
    clash = [g for g in tuning if g in {*blends, CONTROL_BLEND}]
    if clash:
        raise ResultError(f"tuning.{clash[0]}: the name of a blend row of this study; choose another")
    blended = [*blends, *(g for g, members in tuning.items() if set(members) <= set(blends))]
    if CONTROL_FAMILY in comparisons:
        raise ResultError(f"comparisons.{CONTROL_FAMILY}: the name of the family every blend is compared in "
                          "against RP3β + EASE; choose another")
    if not blended:
        return dict(comparisons)
    return {**comparisons, CONTROL_FAMILY: ComparisonConfig(reference=CONTROL_BLEND, rows=tuple(blended))}


def compare(a: Result, b: Result, metric: str, confidence: float, test_to_train: float = 0.0) -> Estimate:
    """a − b on `metric` over the same test users, counting both rows' training runs (and, under
    K-fold, the overlap of the folds' training data: `test_to_train`)."""
    return paired_difference(a.runs(metric), b.runs(metric), confidence, a.stochastic, b.stochastic,
                             test_to_train)


def build_table(results: list[Result], metrics: list[str], eval_cfg: EvalConfig, labels: dict[str, str],
                comparisons: dict[str, ComparisonConfig],
                test_to_train: float = 0.0) -> tuple[pd.DataFrame, list[Family]]:
    """One row per variant/baseline, NaN where an interval or comparison cannot be computed; and the
    comparison families that ran. Per family F: diff_F (with _low, _high), p_F (raw, two-sided),
    p_holm_F (Holm over F's comparisons) and detectable_F (the smallest true difference found with
    80% power at the strictest Holm step).

    `results` come from load_results, which checked that every per-user table has the same test
    users, so the paired arrays line up."""
    confidence = eval_cfg.confidence
    alpha = 1 - confidence
    key = metrics[0]
    multi_seed = any(len(_seed_values(r, key)) > 1 for r in results)
    rows = []
    for r in results:
        row: dict[str, Any] = {"variant": r.name, "label": label(r.name, labels), "kind": r.kind}
        counted = True
        for m in metrics:
            if r.per_user is None:
                row.update({m: float(r.summary[m]), f"{m}_low": np.nan, f"{m}_high": np.nan})
            else:
                est = mean_estimate(r.runs(m), confidence, r.stochastic, test_to_train)
                row.update({m: est.mean, f"{m}_low": est.low, f"{m}_high": est.high})
                counted = counted and est.runs_counted
        row["runs_counted"] = counted
        row["chosen"] = _chosen_setting(r.summary)
        row["tuning_budget"] = r.summary.get("tuning_budget", 1)
        row["best_epoch"] = r.summary.get("best_epoch", pd.NA)
        row["epochs_trained"] = r.summary.get("epochs_trained", pd.NA)
        row["diverged_runs"] = len(r.summary.get("diverged", []))
        row["runs_logged"], row["late_runs"] = _late_runs(r.curves, key)
        row["seeds"] = len(r.summary["seeds"]) if r.kind == "vae" else pd.NA
        if multi_seed:
            for m in metrics:
                values = _seed_values(r, m)
                several = len(values) > 1
                row[f"{m}_seeds_mean"] = float(np.mean(values)) if several else np.nan
                row[f"{m}_seeds_std"] = float(np.std(values, ddof=1)) if several else np.nan
        row["test_users"] = (r.per_user["userId"].nunique() if r.per_user is not None
                             else r.summary.get("test_users", pd.NA))
        rows.append(row)
    table = pd.DataFrame(rows)
    by_name = {r.name: r for r in results}
    families = []
    for name, config in comparisons.items():
        family = resolve_family(name, config, results, key, metrics)
        if family is None:
            continue
        families.append(family)
        found = {n: compare(by_name[n], by_name[family.reference], family.metric, confidence, test_to_train)
                 for n in family.rows}
        columns = {f"diff_{name}": "mean", f"diff_{name}_low": "low", f"diff_{name}_high": "high",
                   f"p_{name}": "p_value"}
        for column, attribute in columns.items():
            table[column] = [float(getattr(found[n], attribute)) if n in found else np.nan
                             for n in table["variant"]]
        table[f"p_holm_{name}"] = holm(table[f"p_{name}"].to_numpy(float))
        table[f"detectable_{name}"] = [found[n].detectable(alpha / len(found), POWER)
                                       if n in found else np.nan for n in table["variant"]]
    return table.astype({"best_epoch": "Int64", "epochs_trained": "Int64", "seeds": "Int64",
                         "test_users": "Int64", "tuning_budget": "Int64", "runs_logged": "Int64",
                         "late_runs": "Int64"}), families


LATE = 0.9  # a run whose selected epoch is past this share of its epochs may still have been improving


def _late_runs(curves: pd.DataFrame | None, key: str) -> tuple[Any, Any]:
    """(runs logged, runs whose best validation `key` came after LATE of their epochs), over every
    fold and seed; NA for a row without logs (a baseline, a blend)."""
    if curves is None:
        return pd.NA, pd.NA
    late = 0
    runs = curves.groupby(["fold", "seed"])
    for _, log in runs:
        scores = log[f"val_{key}"].to_numpy(np.float64)
        best = int(log["epoch"].iloc[int(np.nanargmax(scores))])
        late += best > LATE * int(log["epoch"].max())
    return runs.ngroups, late


def _epochs(row: dict[str, Any]) -> str:
    """"best / trained", with the runs that diverged and those that chose an epoch late."""
    if pd.isna(row["best_epoch"]):
        return ""
    text = f"{row['best_epoch']} / {row['epochs_trained']}"
    n = row["diverged_runs"]
    text += f", {n} run{'s' if n > 1 else ''} diverged" if n else ""
    late = row.get("late_runs")
    if late is not None and not pd.isna(late) and late > 0:
        text += f", {LATE_MARK} {late} of {row['runs_logged']} late"
    return text


def key_metrics(table: pd.DataFrame, key: str) -> dict[str, float]:
    """The study's metrics for `dvc metrics`: each row's key metric, rounded as the table prints it,
    so that plain `dvc metrics show` fits a terminal (intervals, Δ and p are in summary_metrics)."""
    return {str(row["variant"]): round(float(row[key]), 4) for row in table.to_dict("records")}


def summary_metrics(table: pd.DataFrame, key: str, families: list[Family]) -> dict[str, dict[str, Any]]:
    """results/<study>/summary.json: per row, the key metric (named without its cut-off, `ndcg`) with
    its interval, and per comparison family the difference with its interval, raw p and Holm p."""
    short = key.partition("@")[0]
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        values: dict[str, Any] = {short: round(float(row[key]), 6)}
        if not pd.isna(row[f"{key}_low"]):
            values.update(low=round(float(row[f"{key}_low"]), 6), high=round(float(row[f"{key}_high"]), 6))
        for family in families:
            f = family.name
            if not pd.isna(row[f"diff_{f}"]):
                values[f] = {"diff": round(float(row[f"diff_{f}"]), 6),
                             "low": round(float(row[f"diff_{f}_low"]), 6),
                             "high": round(float(row[f"diff_{f}_high"]), 6),
                             "p": round(float(row[f"p_{f}"]), 6),
                             "p_holm": round(float(row[f"p_holm_{f}"]), 6)}
        out[str(row["variant"])] = values
    return out


def number(value: float, signed: bool = False) -> str:
    value = round(value, 4) + 0.0  # + 0.0: a difference that rounds to -0.0 prints as +0.0000
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _with_interval(value: float, low: float, high: float, signed: bool = False) -> str:
    if np.isnan(low):
        return number(value, signed)
    return f"{number(value, signed)} [{number(low, signed)}, {number(high, signed)}]"


def _p_value(p: float) -> str:
    if np.isnan(p):
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _cell(value: Any) -> str:
    """Table cells may hold '|' (β = γ·|x_u|), which would split a Markdown column."""
    return "" if pd.isna(value) else str(value).replace("|", "\\|")


def family_titles(families: list[Family], labels: dict[str, str], key: str) -> dict[str, str]:
    """Each family's column title, 'vs <reference>' (with the metric when it is not the key metric,
    and the family's name where two would read alike)."""
    titles = {}
    for f in families:
        metric = "" if f.metric == key else f" on {metric_title(f.metric)}"
        titles[f.name] = f"vs {label(f.reference, labels)}{metric}"
    repeated = {t for t in titles.values() if list(titles.values()).count(t) > 1}
    return {name: f"{t} ({name})" if t in repeated else t for name, t in titles.items()}


def table_markdown(table: pd.DataFrame, metrics: list[str], eval_cfg: EvalConfig,
                   labels: dict[str, str], dataset: str, families: list[Family],
                   choices: dict[str, Choice] | None = None, notes: list[str] | None = None) -> str:
    """The study's Table IX (Experiment | Test NDCG@100 | Test Recall@20 | Test Recall@50), with the
    intervals, each comparison family's difference and p-values, tuning budget, best epoch and seed
    spread after it."""
    key = metrics[0]
    alpha = 1 - eval_cfg.confidence
    multi_seed = f"{key}_seeds_mean" in table.columns
    titles = family_titles(families, labels, key)
    headers = ["Experiment", *(f"Test {metric_title(m)}" for m in metrics)]
    for f in families:
        headers += [f"Δ {metric_title(f.metric)} {titles[f.name]}", f"p {titles[f.name]}",
                    f"Holm p {titles[f.name]}"]
    headers += ["Tuning budget", "Best epoch"]
    if multi_seed:
        headers += ["Seeds", *(f"{metric_title(m)} across seeds" for m in metrics)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        name = f"{row['label']} ({row['chosen']})" if row.get("chosen") else row["label"]
        if not row["runs_counted"]:
            name += f" {UNCOUNTED}"
        cells = [name, *(_with_interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics)]
        for f in families:
            n = f.name
            if row["variant"] == f.reference:
                cells += ["(reference)", "", ""]
            elif np.isnan(row[f"diff_{n}"]):
                cells += ["", "", ""]
            else:
                mark = f" {SIGNIFICANT}" if row[f"p_holm_{n}"] < alpha else ""
                cells += [_with_interval(row[f"diff_{n}"], row[f"diff_{n}_low"], row[f"diff_{n}_high"],
                                         signed=True) + mark,
                          _p_value(row[f"p_{n}"]), _p_value(row[f"p_holm_{n}"])]
        cells += [row["tuning_budget"], _epochs(row)]
        if multi_seed:
            cells.append(row["seeds"])
            cells += ["" if np.isnan(row[f"{m}_seeds_mean"])
                      else f"{row[f'{m}_seeds_mean']:.4f} ± {row[f'{m}_seeds_std']:.4f}" for m in metrics]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")

    level = f"{eval_cfg.confidence:.0%}"
    bound = f" that take the runs' variance at its {DOF_BOUND:.0%} upper bound" if DOF_BOUND else ""
    users = table["test_users"].dropna()
    over = f"the {int(users.max()):,} test users" if len(users) else "the test users"
    legend = [
        f"Intervals: {level} t intervals that count {over} and the training runs (docs/statistics.md): on "
        "one fold, the users' spread plus each Mult-VAE row's spread over its seeds, with "
        f"Welch–Satterthwaite degrees of freedom{bound}; under K-fold, the spread of the folds' results, "
        "widened for their overlapping training sets. A value "
        "without an interval has no per-user results.",
    ]
    if not table["runs_counted"].all():
        legend.append(f"{UNCOUNTED}: trained once on one fold, so the run-to-run spread is unknown and left "
                      "out of its intervals and tests (run several train.seeds).")
    for f in families:
        m = len(f.rows)
        detectable = table[f"detectable_{f.name}"].dropna()
        low, high = detectable.min(), detectable.max()
        shown = f"{low:.4f}" if round(low, 4) == round(high, 4) else f"{low:.4f} to {high:.4f} by row"
        legend.append(
            f"Δ, p and Holm p {titles[f.name]} (family `{f.name}`, "
            f"{m} comparison{'s' if m > 1 else ''}): Δ is the "
            f"mean paired difference in {metric_title(f.metric)} over the same test users with its {level} "
            f"interval (not adjusted); p is its two-sided test; Holm p is adjusted over the family (Holm's "
            f"step-down method), and {SIGNIFICANT} marks Holm p < {alpha:.2g}, so an interval may exclude 0 "
            f"without a {SIGNIFICANT}. Detectable with 80% power at the family's strictest step: {shown}."
            + "".join(f" {label(a, labels)}: the same runs as {label(b, labels)}, counted once."
                      for a, b in f.same_runs))
    legend.append("Tuning budget: settings tried on validation (a tuning group's members, EASE's λ values "
                  "with the grid's extension and refinement, RP3β's α × β, a blend's weights plus what EASE "
                  "tried, and RP3β's too in RP3β + EASE; a group of blends, each member's weights plus "
                  "EASE's once; the largest over folds); 1: none.")
    legend.append(f"Best epoch: the epoch selected by validation {metric_title(key)}, of the epochs trained "
                  "(the first seed's; train.epochs passes, or more epochs where train.min_updates asks).")
    if (table["late_runs"].fillna(0) > 0).any():
        legend.append(f"{LATE_MARK} late: runs whose selected epoch lies in the last {1 - LATE:.0%} of their "
                      "epochs (any fold, any seed), so they may still have been improving: more epochs "
                      "could change the row.")
    if table["diverged_runs"].any():
        legend.append("diverged: runs whose loss went non-finite; training stopped there and the best "
                      "epoch before it is the run's result (the runs are named in summary.json).")
    for group, choice in (choices or {}).items():
        shown = ", ".join(f"{name} {score:.4f}" for name, score in choice.scores.items())
        picked = sorted(set(choice.by_fold.values()))
        folds = (f"chosen: {picked[0]}" if len(picked) == 1 else
                 "each fold's choice: " + ", ".join(f"{f}: {m}" for f, m in choice.by_fold.items()))
        edge = (f" The choice is at an end of the grid in {', '.join(choice.edges)}: the best setting may "
                "lie beyond it." if choice.edges else "")
        diverged = (" Runs that diverged (their best epoch before it counts): " + ", ".join(
            f"{name} {n}" for name, n in choice.diverged.items()) + "." if choice.diverged else "")
        best = group == BEST_BASELINE
        what = "the baseline" if best else "the member of its grid"
        rest = "; each stays a row of its own" if best else "; the others are not in the table"
        legend.append(f"{label(group, labels)}: {what} with the best validation "
                      f"{metric_title(key)}, chosen on each fold's own validation users ({shown}; {folds})"
                      f"{rest}.{edge}{diverged}")
    if multi_seed:
        legend.append("Across seeds: mean ± sample standard deviation of the test metric over the "
                      "training seeds (their number in Seeds).")
    if notes:
        legend.append("Named in params.yaml but not in this table: " + "; ".join(notes) + ".")
    return (f"# Test results across experimental settings: {dataset}\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {item}" for item in legend) + "\n")
