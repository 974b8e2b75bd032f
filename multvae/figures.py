"""The study's figures: test metrics with intervals, paired differences, validation curves, β
schedules.

matplotlib's object API (Figure, not pyplot), so no display backend or global state is involved.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from multvae.atomic import atomic_path
from multvae.rows import Result
from multvae.table import POWER, Family, label, metric_title, percent


def training_log(results: list[Result]) -> pd.DataFrame:
    """Every run's per-epoch log in one long table (variant, fold, seed, epoch, ...): the data of
    dvc.yaml's overlaid plots, which draw one colour per variant and one line per fold and seed."""
    frames = [r.curves.assign(variant=r.name) for r in results if r.curves is not None]
    if not frames:
        return pd.DataFrame(columns=["variant", "fold", "seed", "epoch"])
    log = pd.concat(frames, ignore_index=True).drop(columns=["seconds"], errors="ignore")
    first = ["variant", "fold", "seed", "epoch"]
    return log[first + [c for c in log.columns if c not in first]]


def _colors(results: list[Result]) -> dict[str, Any]:
    """One colour per system, the same in every figure; baselines in greys, apart from the variants."""
    from matplotlib import colormaps

    vae = [r.name for r in results if r.kind == "vae"]
    # tab10 without its grey (the baselines'); tab20 without its greys when there are more variants
    palette, greys_at = ("tab10", {7}) if len(vae) <= 9 else ("tab20", {14, 15})
    variants = [c for i, c in enumerate(colormaps[palette](range(int(palette[3:])))) if i not in greys_at]
    greys = ["black", "dimgrey", "darkgrey", "silver"]
    baselines = [r.name for r in results if r.kind == "baseline"]
    return {**{n: variants[i % len(variants)] for i, n in enumerate(vae)},
            **{n: greys[i % len(greys)] for i, n in enumerate(baselines)}}


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_comparison(table: pd.DataFrame, metrics: list[str], path: Path, confidence: float,
                    dataset: str) -> None:
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
    ax.set_xticks(x, [textwrap.fill(str(text), 22) for text in table["label"]], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_ylabel("Mean over test users")
    ax.set_title(f"{dataset}: test metrics per experiment (error bars: {percent(confidence)} interval over "
                 "users and training runs)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.legend(loc="outside right upper")
    _save(fig, path)


def _family_panels(sizes: list[int]) -> tuple[Figure, Any]:
    """One panel per comparison family, each as tall as its rows (or one empty panel)."""
    sizes = sizes or [1]
    fig = Figure(figsize=(10.0, 1.6 + 0.42 * sum(sizes) + 0.9 * len(sizes)), layout="constrained")
    return fig, fig.subplots(len(sizes), 1, squeeze=False, height_ratios=[n + 1.5 for n in sizes])[:, 0]


def _family_axis(ax: Axes, y: np.ndarray, names: list[str], title: str) -> None:
    """A zero line, the rows' labels top to bottom, the title at the left."""
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [textwrap.fill(str(text), 40) for text in names])
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_title(title, loc="left")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def plot_differences(table: pd.DataFrame, titles: dict[str, str], path: Path, confidence: float,
                     dataset: str) -> None:
    """A forest plot per comparison family (`titles`: family -> "Δ NDCG@100 vs EASE"): each row's
    paired difference from the family's reference with its interval, * where Holm p < 0.05, and the
    difference the design detects drawn as a grey band around 0. This is what the table's stars
    test; the rows' own intervals (comparison.png) overlap even where the paired difference is clear."""
    families = [f for f in titles if f"diff_{f}" in table and table[f"diff_{f}"].notna().any()]
    fig, axes = _family_panels([int(table[f"diff_{f}"].notna().sum()) for f in families])
    if not families:
        _no_data(axes[0], "no comparison family ran")
    for ax, f in zip(axes, families, strict=False):
        rows = table[table[f"diff_{f}"].notna()]
        y = np.arange(len(rows))[::-1]
        diff = rows[f"diff_{f}"].to_numpy(float)
        low, high = rows[f"diff_{f}_low"].to_numpy(float), rows[f"diff_{f}_high"].to_numpy(float)
        detectable = rows[f"detectable_{f}"].to_numpy(float)
        ax.barh(y, 2 * detectable, left=-detectable, height=0.7, color="0.88",
                label=f"detectable with {percent(POWER)} power (± around 0)")
        ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="o", color="C0", ecolor="C0",
                    capsize=3, label=f"Δ with its {percent(confidence)} interval")
        for yi, hi, p in zip(y, high, rows[f"p_holm_{f}"].to_numpy(float), strict=True):
            if p < 1 - confidence:  # the table's star
                ax.annotate("*", (hi, yi), xytext=(4, -4), textcoords="offset points", fontsize=14)
        _family_axis(ax, y, list(rows["label"]), f"{titles[f]} (Holm family {f}, {len(rows)} comparisons)")
    handles, texts = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, texts, loc="outside lower center", ncols=2)
    fig.suptitle(f"{dataset}: paired differences over the same test users (* Holm p < 0.05)")
    _save(fig, path)


def fold_differences(row: Result, reference: Result, metric: str) -> dict[int, float]:
    """Per fold, the mean over its test users of row − reference (each system's seeds averaged)."""
    a, b = row.runs(metric), reference.runs(metric)
    return {fold: float(np.mean(a[fold].mean(axis=1) - b[fold].mean(axis=1))) for fold in sorted(a)}


def plot_fold_differences(results: list[Result], families: list[Family], titles: dict[str, str],
                          labels: dict[str, str], path: Path, dataset: str) -> None:
    """K-fold studies: each fold's paired difference (a dot per fold) and their mean, per family.
    Where the dots spread wide around a mean, the folds' training sets disagree, which one split
    would hide."""
    named = {r.name: r for r in results}
    fig, axes = _family_panels([len(f.rows) for f in families])
    if not families:
        _no_data(axes[0], "no comparison family ran")
    folds = 0
    for ax, f in zip(axes, families, strict=False):
        y = np.arange(len(f.rows))[::-1]
        for yi, name in zip(y, f.rows, strict=True):
            by_fold = fold_differences(named[name], named[f.reference], f.metric)
            folds = max(folds, len(by_fold))
            ax.scatter(list(by_fold.values()), [yi] * len(by_fold), s=18, color="C0", alpha=0.6,
                       label="one fold")
            ax.scatter([np.mean(list(by_fold.values()))], [yi], marker="D", s=40, color="black",
                       label="mean over folds")
        _family_axis(ax, y, [label(n, labels) for n in f.rows], f"{titles[f.name]} (family {f.name})")
    handles: dict[str, Any] = {}
    for handle, text in zip(*axes[0].get_legend_handles_labels(), strict=True):
        handles.setdefault(text, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2)
    fig.suptitle(f"{dataset}: paired differences fold by fold ({folds} folds)")
    _save(fig, path)


def plot_validation_curves(results: list[Result], metrics: list[str], path: Path,
                           labels: dict[str, str], dataset: str) -> None:
    """Mean over runs (seeds and folds) per epoch, with a ±1 std band when there are several;
    baselines with a validation score appear as dashed horizontal lines."""
    colors = _colors(results)
    trained = [(r, r.curves) for r in results if r.curves is not None]
    fig = Figure(figsize=(4.6 * len(metrics) + 3.0, 5.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    several = False
    for ax, m in zip(axes, metrics, strict=True):
        column = f"val_{m}"
        for r, curves in trained:
            by_epoch = curves.groupby("epoch")[column]
            mean, std = by_epoch.mean(), by_epoch.std()
            ax.plot(mean.index, mean.to_numpy(), color=colors[r.name], linewidth=1.5,
                    label=label(r.name, labels))
            if by_epoch.size().max() > 1:
                several = True
                ax.fill_between(mean.index, mean - std, mean + std, color=colors[r.name], alpha=0.15,
                                linewidth=0)
        for r in results:
            if r.kind == "baseline" and isinstance(r.summary.get(column), (int, float)):
                ax.axhline(r.summary[column], color=colors[r.name], linestyle="--", linewidth=1.2,
                           label=f"{label(r.name, labels)} (baseline)")
        if not trained:
            _no_data(ax, "no training logs found")
        ax.set_title(f"Validation {metric_title(m)}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(metric_title(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper")
    band = " (line: mean over runs, band: ±1 std)" if several else ""
    fig.suptitle(f"{dataset}, {_epochs(results)}: validation metrics during training{band}")
    _save(fig, path)


def plot_beta_schedules(results: list[Result], path: Path, labels: dict[str, str], dataset: str,
                        spreads: dict[str, tuple[float, float]] | None = None) -> None:
    """Variants with the same schedule (every non-β ablation anneals like the original) share one
    line, named after all of them; otherwise the last drawn would hide the others. A variant with a
    per-user β (γ·|x_u|) also gets its spread over users as a band (`spreads`: name -> the β of the
    10th and 90th percentile training user), around the line of the mean over updates."""
    spreads = spreads or {}
    colors = _colors(results)
    groups: dict[tuple[tuple[float, ...], tuple[float, ...]], list[Result]] = {}
    for r in results:
        if r.curves is not None:
            beta = r.curves.groupby("epoch")["beta"].mean()
            key = (tuple(beta.index.astype(float)), tuple(np.round(beta.to_numpy(float), 6)))
            groups.setdefault(key, []).append(r)
    fig = Figure(figsize=(14.0, 5.0), layout="constrained")
    axes = fig.subplots(1, 2)
    # Left: every schedule at full scale; right: β up to 0.25, where the paper's anneal to 0.2
    # would otherwise be a line along the axis next to the cyclical schedule's cap of 1.
    for ax, top, title in ((axes[0], None, "all schedules"), (axes[1], 0.25, "detail: β ≤ 0.25")):
        for (epochs, beta), members in groups.items():
            names = ", ".join(label(r.name, labels) for r in members)
            ax.plot(epochs, beta, color=colors[members[0].name], linewidth=1.8,
                    label=textwrap.fill(names, 40))
            band = next((spreads[r.name] for r in members if r.name in spreads), None)
            if band is not None:
                ax.fill_between(epochs, band[0], band[1], color=colors[members[0].name], alpha=0.15,
                                linewidth=0, label=textwrap.fill(f"{names}: 10th–90th percentile user", 40))
        if not groups:
            _no_data(ax, "no training logs found")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("β (mean over the epoch's updates)")
        ax.set_title(title)
        ax.set_ylim(bottom=0, top=top)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if groups:  # below the axes: beside them, the legend's top reached into the title
        handles, texts = axes[0].get_legend_handles_labels()
        fig.legend(handles, texts, loc="outside lower center", ncols=min(3, len(handles)))
    fig.suptitle(f"{dataset}, {_epochs(results)}: KL weight β during training "
                 "(identical schedules share a line)")
    _save(fig, path)


def _epochs(results: list[Result]) -> str:
    """'200 epochs' (the longest run among the logs), for figure titles."""
    longest = max((int(r.curves["epoch"].max()) for r in results if r.curves is not None), default=0)
    return f"{longest} epochs"


