"""Every variant's and baseline's test results side by side: the study's Table IX with intervals.

A point estimate alone cannot say whether an ablation changed anything, so each mean carries a
bootstrap interval over test users, and each variant a paired test against the original model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multvae.config import EvalConfig
from multvae.layout import run_path
from multvae.live_log import LogError, read_log
from multvae.results import ResultError, read_per_user, read_summary
from multvae.stats import bootstrap_ci, detectable_difference, holm, paired_difference

REFERENCE = "original"
BASELINES = ("most_popular", "ease")
STRONGEST_BASELINE = "ease"  # every Mult-VAE row is also compared with it
SIGNIFICANT = "*"
_METRIC_TITLES = {"ndcg": "NDCG", "recall": "Recall"}


@dataclass(frozen=True)
class Result:
    name: str
    kind: str
    summary: dict[str, Any]
    per_user: pd.DataFrame | None  # index: test userId; metric columns, averaged over seeds
    curves: pd.DataFrame | None  # the per-epoch training log, every fold and seed


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


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise ResultError(f"{path} not found: {what}")


def extra_files(metrics_dir: Path, order: list[str] | tuple[str, ...]) -> list[Path]:
    """Result files in metrics_dir that are neither a row of `order` nor a baseline."""
    return [p for p in sorted(Path(metrics_dir).glob("*.json"))
            if p.stem not in order and p.stem not in BASELINES]


def load_results(metrics_dir: Path, per_user_dir: Path, curves_dir: Path, metrics: list[str],
                 order: list[str] | tuple[str, ...] = ()) -> list[Result]:
    """The `<name>.json` files of metrics_dir with their per-user results and training logs.

    With `order` (the study's rows), only those rows and the baselines, in that order: the folder
    also holds the files of rows that other studies ran (`extra_files` names them). Without it, every
    file. A row of `order` without a file is simply absent: a partial table while other rows still
    train is useful.
    """
    metrics_dir, per_user_dir, curves_dir = Path(metrics_dir), Path(per_user_dir), Path(curves_dir)
    _require_dir(metrics_dir, "run the evaluate and baseline stages first")
    _require_dir(per_user_dir, "run the evaluate and baseline stages first (they write per-user results)")
    _require_dir(curves_dir, "run the train stages first (they write the training logs)")
    paths = {p.stem: p for p in sorted(metrics_dir.glob("*.json"))
             if not order or p.stem in order or p.stem in BASELINES}
    if not paths:
        raise ResultError(f"{metrics_dir}: no <variant>.json metrics files")
    results = []
    for name, path in paths.items():
        summary = read_summary(path, metrics)
        user_path = per_user_dir / f"{name}.parquet"
        results.append(Result(
            name=name,
            kind=summary["kind"],
            summary=summary,
            per_user=read_per_user(user_path, metrics, summary) if user_path.is_file() else None,
            curves=_read_curves(curves_dir, name, metrics, [int(f) for f in summary.get("folds") or [0]],
                                [int(s) for s in summary.get("seeds") or {}]),
        ))
    rank = [*order, *BASELINES]
    results.sort(key=lambda r: (r.kind == "baseline", rank.index(r.name) if r.name in rank else len(rank),
                                r.name))
    scored = [(r, r.per_user) for r in results if r.per_user is not None]
    for r, per_user in scored[1:]:
        if not per_user.index.equals(scored[0][1].index):
            raise ResultError(
                f"{per_user_dir / f'{r.name}.parquet'} and {per_user_dir / f'{scored[0][0].name}.parquet'} "
                "hold different test users; paired comparisons need the same users (re-run evaluate)"
            )
    return results


def _seed_values(result: Result, metric: str) -> list[float]:
    return [float(v[metric]) for v in (result.summary.get("seeds") or {}).values()]


def select_tuned(results: list[Result], tuning: dict[str, tuple[str, ...]],
                 key: str) -> tuple[list[Result], dict[str, dict[str, float]]]:
    """Each tuning group (params.yaml `tuning:`) becomes one row: its member with the best validation
    score (`val_<key>`, the test set is never looked at), under the group's name. Returns the rows
    and, per group, every member's validation score (for the legend)."""
    by_name = {r.name: r for r in results}
    grid: dict[str, dict[str, float]] = {}
    chosen: dict[str, Result] = {}
    for group, members in tuning.items():
        present = [by_name[m] for m in members if m in by_name]
        if not present:
            continue
        grid[group] = {r.name: float(r.summary[f"val_{key}"]) for r in present}
        best = max(present, key=lambda r: grid[group][r.name])
        chosen[best.name] = Result(group, best.kind, {**best.summary, "chosen": best.name}, best.per_user,
                                   best.curves)
    hidden = {m for members in tuning.values() for m in members}
    rows = [chosen.get(r.name, r) for r in results if r.name not in hidden or r.name in chosen]
    return rows, grid


def _chosen_lambda(summary: dict[str, Any]) -> str:
    """A baseline's λ chosen on validation (EASE): one value, or each fold's where they differ."""
    lam = summary.get("lambda")
    if isinstance(lam, (int, float)):
        return f"λ = {lam:g}"
    by_fold = summary.get("lambda_by_fold")
    if not isinstance(by_fold, dict) or not by_fold:
        return ""
    values = sorted({float(v) for v in by_fold.values()})
    if len(values) == 1:
        return f"λ = {values[0]:g} (every fold)"
    return "λ by fold: " + ", ".join(f"{v:g}" for v in by_fold.values())


def build_table(results: list[Result], metrics: list[str], eval_cfg: EvalConfig,
                labels: dict[str, str]) -> pd.DataFrame:
    """One row per variant/baseline; NaN where an interval or comparison cannot be computed.
    The comparisons with the reference share one Holm correction; `significant` is p_holm < alpha.

    `results` come from load_results, which checked that every per-user table has the same users
    in the same order, so the paired arrays line up.

    The difference columns exist only when the original model has per-user results, and the
    across-seed columns only when some variant was trained with several seeds.
    """
    boot: dict[str, Any] = {"samples": eval_cfg.bootstrap_samples, "confidence": eval_cfg.confidence,
                            "seed": eval_cfg.seed}
    reference = next((r.per_user for r in results if r.name == REFERENCE and r.per_user is not None), None)
    key = metrics[0]
    multi_seed = any(len(_seed_values(r, key)) > 1 for r in results)
    rows = []
    differences: dict[str, np.ndarray] = {}
    for r in results:
        row: dict[str, Any] = {"variant": r.name, "label": label(r.name, labels), "kind": r.kind}
        for m in metrics:
            if r.per_user is None:
                row.update({m: float(r.summary[m]), f"{m}_low": np.nan, f"{m}_high": np.nan})
            else:
                values = r.per_user[m].to_numpy()
                low, high = bootstrap_ci(values, **boot)
                row.update({m: float(values.mean()), f"{m}_low": low, f"{m}_high": high})
        if reference is not None:
            diff = {f"diff_{key}": np.nan, f"diff_{key}_low": np.nan, f"diff_{key}_high": np.nan,
                    "p_value": np.nan}
            if r.per_user is not None and r.name != REFERENCE:
                d = paired_difference(r.per_user[key].to_numpy(), reference[key].to_numpy(), **boot)
                diff = {f"diff_{key}": d["mean_diff"], f"diff_{key}_low": d["low"],
                        f"diff_{key}_high": d["high"], "p_value": d["p_value"]}
                differences[r.name] = r.per_user[key].to_numpy() - reference[key].to_numpy()
            row.update(diff)
        row["chosen"] = r.summary.get("chosen") or _chosen_lambda(r.summary)
        row["best_epoch"] = r.summary.get("best_epoch", pd.NA)
        row["seeds"] = len(r.summary["seeds"]) if r.kind == "vae" else pd.NA
        if multi_seed:
            for m in metrics:
                values = _seed_values(r, m)
                several = len(values) > 1
                row[f"{m}_seeds_mean"] = float(np.mean(values)) if several else np.nan
                row[f"{m}_seeds_std"] = float(np.std(values, ddof=1)) if several else np.nan
        row["test_users"] = len(r.per_user) if r.per_user is not None else r.summary.get("test_users", pd.NA)
        rows.append(row)
    table = pd.DataFrame(rows)
    _compare_with_baseline(table, results, key, eval_cfg, boot)
    types = {"best_epoch": "Int64", "seeds": "Int64", "test_users": "Int64"}
    if reference is not None:
        alpha = 1 - eval_cfg.confidence
        table["p_holm"] = holm(table["p_value"].to_numpy(float))
        table["significant"] = pd.array([None if np.isnan(p) else bool(p < alpha) for p in table["p_holm"]],
                                        dtype="boolean")
        family = max(len(differences), 1)
        table[f"detectable_{key}"] = [detectable_difference(differences[n], alpha / family)
                                      if n in differences else np.nan for n in table["variant"]]
    return table.astype(types)


def _compare_with_baseline(table: pd.DataFrame, results: list[Result], key: str, eval_cfg: EvalConfig,
                           boot: dict[str, Any]) -> None:
    """Each Mult-VAE row against the strongest baseline (EASE) too, when it has per-user results:
    paired difference with its interval, and Holm's correction over these comparisons."""
    baseline = next((r.per_user for r in results
                     if r.name == STRONGEST_BASELINE and r.per_user is not None), None)
    if baseline is None:
        return
    b = STRONGEST_BASELINE
    columns: dict[str, list[float]] = {f"diff_{b}_{key}": [], f"diff_{b}_{key}_low": [],
                                       f"diff_{b}_{key}_high": [], f"p_{b}": []}
    for r in results:
        d = (paired_difference(r.per_user[key].to_numpy(), baseline[key].to_numpy(), **boot)
             if r.kind == "vae" and r.per_user is not None else None)
        found = [np.nan] * 4 if d is None else [d["mean_diff"], d["low"], d["high"], d["p_value"]]
        for column, value in zip(columns, found, strict=True):
            columns[column].append(float(value))
    for column, values in columns.items():
        table[column] = values
    table[f"p_{STRONGEST_BASELINE}_holm"] = holm(table[f"p_{STRONGEST_BASELINE}"].to_numpy(float))


def summary_metrics(table: pd.DataFrame, key: str) -> dict[str, dict[str, float]]:
    """The compact metrics file for `dvc metrics` / `dvc exp show`: per row, the key metric (named
    without its cut-off, `ndcg`, so that every variant's column fits a terminal) with its interval
    (`low`, `high`) and, against the reference, the difference with its interval and raw and Holm p."""
    short = key.partition("@")[0]
    columns = {key: short, f"{key}_low": "low", f"{key}_high": "high",
               f"diff_{key}": "diff", f"diff_{key}_low": "diff_low", f"diff_{key}_high": "diff_high",
               "p_value": "p", "p_holm": "p_holm",
               f"diff_{STRONGEST_BASELINE}_{key}": f"diff_{STRONGEST_BASELINE}",
               f"diff_{STRONGEST_BASELINE}_{key}_low": f"diff_{STRONGEST_BASELINE}_low",
               f"diff_{STRONGEST_BASELINE}_{key}_high": f"diff_{STRONGEST_BASELINE}_high",
               f"p_{STRONGEST_BASELINE}_holm": f"p_{STRONGEST_BASELINE}_holm"}
    out: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        values = {short: round(float(row[column]), 6) for column, short in columns.items()
                  if column in row and not pd.isna(row[column])}
        out[str(row["variant"])] = values
    return out


def _number(value: float, signed: bool = False) -> str:
    value = round(value, 4) + 0.0  # + 0.0: a difference that rounds to -0.0 prints as +0.0000
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _with_interval(value: float, low: float, high: float, signed: bool = False) -> str:
    if np.isnan(low):
        return _number(value, signed)
    return f"{_number(value, signed)} [{_number(low, signed)}, {_number(high, signed)}]"


def _p_value(p: float) -> str:
    if np.isnan(p):
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _cell(value: Any) -> str:
    """Table cells may hold '|' (β = γ·|x_u|), which would split a Markdown column."""
    return "" if pd.isna(value) else str(value).replace("|", "\\|")


def table_markdown(table: pd.DataFrame, metrics: list[str], eval_cfg: EvalConfig,
                   labels: dict[str, str], dataset: str,
                   grid: dict[str, dict[str, float]] | None = None) -> str:
    """The study's Table IX (Experiment | Test NDCG@100 | Test Recall@20 | Test Recall@50), with the
    intervals, the comparison with the original model, best epoch and seed spread after it."""
    key = metrics[0]
    compared = f"diff_{key}" in table.columns
    multi_seed = f"{key}_seeds_mean" in table.columns
    headers = ["Experiment", *(f"Test {metric_title(m)}" for m in metrics)]
    if compared:
        headers += [f"Δ {metric_title(key)} vs {label(REFERENCE, labels)}", "p", "p (Holm)"]
    against = f"diff_{STRONGEST_BASELINE}_{key}" in table.columns
    if against:
        headers += [f"Δ {metric_title(key)} vs {label(STRONGEST_BASELINE, labels)}", "p (Holm) "]
    headers.append("Best epoch")
    if multi_seed:
        headers += ["Seeds", *(f"{metric_title(m)} across seeds" for m in metrics)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        name = f"{row['label']} ({row['chosen']})" if row.get("chosen") else row["label"]
        cells = [name, *(_with_interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics)]
        if compared:
            if row["variant"] == REFERENCE:
                cells += ["(reference)", "", ""]
            elif np.isnan(row[f"diff_{key}"]):
                cells += ["", "", ""]
            else:
                mark = f" {SIGNIFICANT}" if row["significant"] else ""
                diff = _with_interval(row[f"diff_{key}"], row[f"diff_{key}_low"], row[f"diff_{key}_high"],
                                      signed=True)
                cells += [diff + mark, _p_value(row["p_value"]), _p_value(row["p_holm"])]
        if against:
            b = STRONGEST_BASELINE
            if np.isnan(row[f"diff_{b}_{key}"]):
                cells += ["", ""]
            else:
                mark = f" {SIGNIFICANT}" if row[f"p_{b}_holm"] < 1 - eval_cfg.confidence else ""
                cells += [_with_interval(row[f"diff_{b}_{key}"], row[f"diff_{b}_{key}_low"],
                                         row[f"diff_{b}_{key}_high"], signed=True) + mark,
                          _p_value(row[f"p_{b}_holm"])]
        cells.append(row["best_epoch"])
        if multi_seed:
            cells.append(row["seeds"])
            cells += ["" if np.isnan(row[f"{m}_seeds_mean"])
                      else f"{row[f'{m}_seeds_mean']:.4f} ± {row[f'{m}_seeds_std']:.4f}" for m in metrics]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")

    level = f"{eval_cfg.confidence:.0%}"
    users = table["test_users"].dropna()
    over = f"the {int(users.max()):,} test users" if len(users) else "the test users"
    legend = [
        f"Intervals: {level} percentile bootstrap of the mean over {over} ({eval_cfg.bootstrap_samples:,} "
        f"resamples, seed {eval_cfg.seed}); with several training seeds each user's metric is first "
        "averaged over the seeds. A value without an interval has no per-user results.",
    ]
    if compared:
        family = max(int(table[f"diff_{key}"].notna().sum()), 1)
        alpha = 1 - eval_cfg.confidence
        detectable = table[f"detectable_{key}"].dropna()
        legend.append(
            f"Δ: mean paired difference to the {label(REFERENCE, labels)} over the same test users, with its "
            f"{level} bootstrap interval; p: two-sided paired t-test over users; p (Holm): adjusted for the "
            f"{family} comparisons with the {label(REFERENCE, labels)} (Holm's step-down method); "
            f"{SIGNIFICANT} marks p (Holm) < {alpha:.2g}."
        )
        if len(detectable):
            legend.append(
                f"Detectable difference: with these test users, a true Δ {metric_title(key)} of "
                f"{detectable.min():.4f} to {detectable.max():.4f} (by row, from the spread of its per-user "
                f"differences) is found with 80% power by a paired test at {alpha:.2g}/{family} (the "
                "correction's strictest step); smaller true differences are likely to be missed."
            )
    else:
        legend.append(f"No comparison column: the {label(REFERENCE, labels)} ('{REFERENCE}') has no per-user "
                      "results.")
    if against:
        family = max(int(table[f"diff_{STRONGEST_BASELINE}_{key}"].notna().sum()), 1)
        legend.append(
            f"Δ vs {label(STRONGEST_BASELINE, labels)}: each Mult-VAE row against the strongest baseline, "
            f"paired over the same users, with its {level} bootstrap interval and the paired t-test's p "
            f"adjusted by Holm over these {family} comparisons ({SIGNIFICANT}: below "
            f"{1 - eval_cfg.confidence:.2g}); positive: the row beats it.")
    legend.append(f"Best epoch: the epoch selected by validation {metric_title(key)}.")
    for group, scores in (grid or {}).items():
        shown = ", ".join(f"{name} {score:.4f}" for name, score in scores.items())
        legend.append(f"{label(group, labels)}: the member of its grid with the best validation "
                      f"{metric_title(key)} ({shown}); the others are not in the table.")
    if multi_seed:
        legend.append("Across seeds: mean ± sample standard deviation of the test metric over the "
                      "training seeds (their number in Seeds).")
    return (f"# Test results across experimental settings: {dataset}\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {item}" for item in legend) + "\n")


