"""Every variant's and baseline's test results side by side: the study's Table IX with intervals.

A point estimate alone cannot say whether an ablation changed anything, so each mean carries a
bootstrap interval over test users, and each variant a paired test against the original model.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multvae.atomic import atomic_path, write_text
from multvae.config import EvalConfig
from multvae.data import DataError
from multvae.stats import bootstrap_ci, paired_difference

REFERENCE = "original"
BASELINES = ("most_popular", "ease")
KINDS = ("vae", "baseline")
LABELS = {
    "original": "Original model",
    "latent_300": "Latent 300",
    "two_hidden_layers": "Two hidden layers [600, 400]",
    "relu": "ReLU",
    "sgd": "Gradient descent",
    "cyclical_cap_1": "Cyclical β (cap 1.0)",
    "cyclical_cap_0_2": "Cyclical β (cap 0.2)",
    "user_scaled": "β = γ·|x_u|",
    "most_popular": "Most popular",
    "ease": "EASE",
}
SIGNIFICANT = "*"
_METRIC_TITLES = {"ndcg": "NDCG", "recall": "Recall"}
# Per-user means and the metrics file are both averages of the same values; more than float32
# rounding between them means the two files come from different runs.
_MEAN_TOLERANCE = 1e-4


class ReportError(DataError):
    """An input of the comparison is missing or malformed; the message names the file.

    A DataError, so the stage prints it as one line (multvae.errors.USER_ERRORS).
    """


@dataclass(frozen=True)
class Result:
    name: str
    kind: str
    summary: dict[str, Any]
    per_user: pd.DataFrame | None  # index: test user; metric columns, averaged over seeds
    curves: pd.DataFrame | None  # the per-epoch training log, every seed


def label(name: str) -> str:
    return LABELS.get(name, name)


def metric_title(metric: str) -> str:
    kind, _, k = metric.partition("@")
    return f"{_METRIC_TITLES.get(kind, kind)}@{k}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _read_summary(path: Path, metrics: list[str]) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the metrics file: {exc}") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object")
    if summary.get("kind") not in KINDS:
        raise ReportError(f"{path}: 'kind' must be one of {', '.join(KINDS)}, got {summary.get('kind')!r}")
    missing = [m for m in metrics if not _is_number(summary.get(m))]
    if missing:
        raise ReportError(f"{path}: missing or non-numeric {', '.join(missing)}")
    if summary["kind"] == "vae":
        seeds = summary.get("seeds")
        if not isinstance(seeds, dict) or not seeds:
            raise ReportError(f"{path}: a VAE variant needs 'seeds', one entry per training seed")
        for seed, values in seeds.items():
            if not isinstance(values, dict) or not all(_is_number(values.get(m)) for m in metrics):
                raise ReportError(f"{path}: seeds.{seed} lacks one of {', '.join(metrics)}")
    return summary


def _read_per_user(path: Path, metrics: list[str], summary: dict[str, Any]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the per-user results: {exc}") from None
    missing = [c for c in ("user", *metrics) if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty or frame[metrics].isna().any().any():
        raise ReportError(f"{path}: no rows, or missing metric values")
    per_user = frame.groupby("user")[metrics].mean()
    for m in metrics:
        if abs(per_user[m].mean() - summary[m]) > _MEAN_TOLERANCE:
            raise ReportError(
                f"{path}: mean {m} {per_user[m].mean():.5f} disagrees with {summary[m]:.5f} in the metrics "
                "file; both should come from the same evaluation run (re-run the variant's evaluate stage)"
            )
    return per_user


def _read_curves(path: Path, metrics: list[str]) -> pd.DataFrame:
    try:
        curves = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the training log: {exc}") from None
    missing = [c for c in ("epoch", "beta", *(f"val_{m}" for m in metrics)) if c not in curves.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    return curves


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise ReportError(f"{path} not found: {what}")


def load_results(metrics_dir: Path, per_user_dir: Path, curves_dir: Path, metrics: list[str],
                 order: list[str] | tuple[str, ...] = ()) -> list[Result]:
    """Every `<name>.json` of metrics_dir with its per-user results and training log where present.

    Rows follow `order` (the variants of params.yaml), then the baselines, then any other file by
    name, so an extra or stale file shows up rather than vanishing. A variant of `order` without a
    file is simply absent: a partial table while other variants still train is useful.
    """
    metrics_dir, per_user_dir, curves_dir = Path(metrics_dir), Path(per_user_dir), Path(curves_dir)
    _require_dir(metrics_dir, "run the evaluate and baseline stages first")
    _require_dir(per_user_dir, "run the evaluate and baseline stages first (they write per-user results)")
    _require_dir(curves_dir, "run the train stages first (they write the training logs)")
    paths = {p.stem: p for p in sorted(metrics_dir.glob("*.json"))}
    if not paths:
        raise ReportError(f"{metrics_dir}: no <variant>.json metrics files")
    results = []
    for name, path in paths.items():
        summary = _read_summary(path, metrics)
        user_path = per_user_dir / f"{name}.parquet"
        curve_path = curves_dir / f"{name}.csv"
        results.append(Result(
            name=name,
            kind=summary["kind"],
            summary=summary,
            per_user=_read_per_user(user_path, metrics, summary) if user_path.is_file() else None,
            curves=_read_curves(curve_path, metrics) if curve_path.is_file() else None,
        ))
    rank = [*order, *BASELINES]
    results.sort(key=lambda r: (r.kind == "baseline", rank.index(r.name) if r.name in rank else len(rank),
                                r.name))
    scored = [r for r in results if r.per_user is not None]
    for r in scored[1:]:
        if not r.per_user.index.equals(scored[0].per_user.index):
            raise ReportError(
                f"{per_user_dir / f'{r.name}.parquet'} and {per_user_dir / f'{scored[0].name}.parquet'} "
                "hold different test users; paired comparisons need the same users (re-run evaluate)"
            )
    return results


def _seed_values(result: Result, metric: str) -> list[float]:
    return [float(v[metric]) for v in (result.summary.get("seeds") or {}).values()]


def build_table(results: list[Result], metrics: list[str], eval_cfg: EvalConfig) -> pd.DataFrame:
    """One row per variant/baseline; NaN where an interval or comparison cannot be computed.

    `results` come from load_results, which checked that every per-user table has the same users
    in the same order, so the paired arrays line up.

    The difference columns exist only when the original model has per-user results, and the
    across-seed columns only when some variant was trained with several seeds.
    """
    boot = {"samples": eval_cfg.bootstrap_samples, "confidence": eval_cfg.confidence, "seed": eval_cfg.seed}
    reference = next((r for r in results if r.name == REFERENCE and r.per_user is not None), None)
    key = metrics[0]
    multi_seed = any(len(_seed_values(r, key)) > 1 for r in results)
    rows = []
    for r in results:
        row: dict[str, Any] = {"variant": r.name, "label": label(r.name), "kind": r.kind}
        for m in metrics:
            if r.per_user is None:
                row.update({m: float(r.summary[m]), f"{m}_low": np.nan, f"{m}_high": np.nan})
            else:
                values = r.per_user[m].to_numpy()
                low, high = bootstrap_ci(values, **boot)
                row.update({m: float(values.mean()), f"{m}_low": low, f"{m}_high": high})
        if reference is not None:
            diff = {f"diff_{key}": np.nan, f"diff_{key}_low": np.nan, f"diff_{key}_high": np.nan,
                    "p_value": np.nan, "significant": pd.NA}
            if r.per_user is not None and r is not reference:
                d = paired_difference(r.per_user[key].to_numpy(), reference.per_user[key].to_numpy(), **boot)
                diff = {f"diff_{key}": d["mean_diff"], f"diff_{key}_low": d["low"],
                        f"diff_{key}_high": d["high"], "p_value": d["p_value"],
                        "significant": d["p_value"] < 1 - eval_cfg.confidence}
            row.update(diff)
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
    types = {"best_epoch": "Int64", "seeds": "Int64", "test_users": "Int64"}
    if reference is not None:
        types["significant"] = "boolean"
    return table.astype(types)


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


def table_markdown(table: pd.DataFrame, metrics: list[str], eval_cfg: EvalConfig) -> str:
    """The study's Table IX (Experiment | Test NDCG@100 | Test Recall@20 | Test Recall@50), with the
    intervals, the comparison with the original model, best epoch and seed spread after it."""
    key = metrics[0]
    compared = f"diff_{key}" in table.columns
    multi_seed = f"{key}_seeds_mean" in table.columns
    headers = ["Experiment", *(f"Test {metric_title(m)}" for m in metrics)]
    if compared:
        headers += [f"Δ {metric_title(key)} vs {label(REFERENCE)}", "p"]
    headers.append("Best epoch")
    if multi_seed:
        headers += ["Seeds", *(f"{metric_title(m)} across seeds" for m in metrics)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        cells = [row["label"], *(_with_interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics)]
        if compared:
            if row["variant"] == REFERENCE:
                cells += ["(reference)", ""]
            elif np.isnan(row[f"diff_{key}"]):
                cells += ["", ""]
            else:
                mark = f" {SIGNIFICANT}" if row["significant"] else ""
                diff = _with_interval(row[f"diff_{key}"], row[f"diff_{key}_low"], row[f"diff_{key}_high"],
                                      signed=True)
                cells += [diff + mark, _p_value(row["p_value"])]
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
        legend.append(
            f"Δ: mean paired difference to the {label(REFERENCE)} over the same test users, with its "
            f"{level} bootstrap interval; p: two-sided paired t-test over users; {SIGNIFICANT} marks "
            f"p < {1 - eval_cfg.confidence:.2g} (each comparison on its own, not corrected for the "
            f"{max(int(table[f'diff_{key}'].notna().sum()), 1)} comparisons)."
        )
    else:
        legend.append(f"No comparison column: the {label(REFERENCE)} ('{REFERENCE}') has no per-user "
                      "results.")
    legend.append(f"Best epoch: the epoch selected by validation {metric_title(key)}.")
    if multi_seed:
        legend.append("Across seeds: mean ± sample standard deviation of the test metric over the "
                      "training seeds (their number in Seeds).")
    return ("# Test results across experimental settings\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {item}" for item in legend) + "\n")


def _colors(results: list[Result]) -> dict[str, Any]:
    """One colour per system, the same in every figure; baselines in greys, apart from the variants."""
    from matplotlib import colormaps

    tab10 = colormaps["tab10"].colors
    variants = [c for i, c in enumerate(tab10) if i != 7]  # tab10's grey is the baselines'
    greys = ["black", "dimgrey", "darkgrey"]
    vae = [r.name for r in results if r.kind == "vae"]
    baselines = [r.name for r in results if r.kind == "baseline"]
    return {**{n: variants[i % len(variants)] for i, n in enumerate(vae)},
            **{n: greys[i % len(greys)] for i, n in enumerate(baselines)}}


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_comparison(table: pd.DataFrame, metrics: list[str], path: Path, confidence: float) -> None:
    """Bars start at zero, so the small gaps between variants look as small as they are; the table
    has the digits."""
    fig = Figure(figsize=(max(8.0, 0.85 * len(table) + 3.5), 5.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        pos = x + (j - (len(metrics) - 1) / 2) * width
        values = table[m].to_numpy(float)
        low, high = table[f"{m}_low"].to_numpy(float), table[f"{m}_high"].to_numpy(float)
        ax.bar(pos, values, width, label=f"Test {metric_title(m)}", color=f"C{j}")
        ok = ~np.isnan(low)
        ax.errorbar(pos[ok], values[ok], yerr=[values[ok] - low[ok], high[ok] - values[ok]], fmt="none",
                    ecolor="black", elinewidth=1, capsize=3)
    for i in range(1, len(table)):
        if table["kind"].iat[i] != table["kind"].iat[i - 1]:
            ax.axvline(i - 0.5, color="grey", linestyle=":", linewidth=1)
    tops = np.fmax(table[[f"{m}_high" for m in metrics]].to_numpy(float), table[metrics].to_numpy(float))
    ax.set_ylim(0, max(float(np.nanmax(tops)) * 1.1, 1e-3))
    ax.set_xticks(x, [textwrap.fill(label(n), 22) for n in table["variant"]], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_ylabel("Mean over test users")
    ax.set_title(f"Test metrics per experiment (error bars: {confidence:.0%} bootstrap interval over users)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.legend(loc="outside right upper")
    _save(fig, path)


def plot_validation_curves(results: list[Result], metrics: list[str], path: Path) -> None:
    """Mean over seeds per epoch, with a ±1 std band when there are several; baselines with a
    validation score appear as dashed horizontal lines."""
    colors = _colors(results)
    trained = [r for r in results if r.curves is not None]
    fig = Figure(figsize=(4.6 * len(metrics) + 3.0, 5.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    several = False
    for ax, m in zip(axes, metrics, strict=True):
        column = f"val_{m}"
        for r in trained:
            by_epoch = r.curves.groupby("epoch")[column]
            mean, std = by_epoch.mean(), by_epoch.std()
            ax.plot(mean.index, mean.to_numpy(), color=colors[r.name], linewidth=1.5, label=label(r.name))
            if by_epoch.size().max() > 1:
                several = True
                ax.fill_between(mean.index, mean - std, mean + std, color=colors[r.name], alpha=0.15,
                                linewidth=0)
        for r in results:
            if r.kind == "baseline" and _is_number(r.summary.get(column)):
                ax.axhline(r.summary[column], color=colors[r.name], linestyle="--", linewidth=1.2,
                           label=f"{label(r.name)} (baseline)")
        if not trained:
            _no_data(ax, "no training logs found")
        ax.set_title(f"Validation {metric_title(m)}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(metric_title(m))
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper")
    band = " (line: mean over seeds, band: ±1 std)" if several else ""
    fig.suptitle(f"Validation metrics during training{band}")
    _save(fig, path)


def plot_beta_schedules(results: list[Result], path: Path) -> None:
    """Variants with the same schedule (every non-β ablation anneals like the original) share one
    line, named after all of them; otherwise the last drawn would hide the others."""
    colors = _colors(results)
    groups: dict[tuple[tuple[float, ...], tuple[float, ...]], list[Result]] = {}
    for r in results:
        if r.curves is not None:
            beta = r.curves.groupby("epoch")["beta"].mean()
            key = (tuple(beta.index.astype(float)), tuple(np.round(beta.to_numpy(float), 6)))
            groups.setdefault(key, []).append(r)
    fig = Figure(figsize=(11.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for (epochs, beta), members in groups.items():
        names = ", ".join(label(r.name) for r in members)
        ax.plot(epochs, beta, color=colors[members[0].name], linewidth=1.8, label=textwrap.fill(names, 40))
    if groups:
        fig.legend(loc="outside right upper")
    else:
        _no_data(ax, "no training logs found")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("β (mean over the epoch's updates)")
    ax.set_title("KL weight β during training (identical schedules share a line)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _save(fig, path)


def write_report(results: list[Result], metrics: list[str], eval_cfg: EvalConfig, table_path: Path,
                 csv_path: Path, plots_dir: Path) -> pd.DataFrame:
    table = build_table(results, metrics, eval_cfg)
    write_text(table_path, table_markdown(table, metrics, eval_cfg))
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    plots_dir = Path(plots_dir)
    plot_comparison(table, metrics, plots_dir / "comparison.png", eval_cfg.confidence)
    plot_validation_curves(results, metrics, plots_dir / "validation_curves.png")
    plot_beta_schedules(results, plots_dir / "beta_schedules.png")
    return table
