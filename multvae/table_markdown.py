"""The comparison table as Markdown (the study's Table IX with intervals, differences and p-values)
and the legend that says how each column was computed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multvae.config import BEST_BASELINE, EvalConfig
from multvae.selection import Choice
from multvae.stats import DOF_BOUND
from multvae.table import LATE, POWER, Family, label, metric_title, percent

SIGNIFICANT = "*"
UNCOUNTED = "†"  # a stochastic row trained once on one fold: its run-to-run noise is unknown
LATE_MARK = "⚑"  # runs that selected an epoch near the end of their training


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

    level = percent(eval_cfg.confidence)
    bound = f" that take the runs' variance at its {percent(DOF_BOUND)} upper bound" if DOF_BOUND else ""
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
            f"without a {SIGNIFICANT}. Detectable with {percent(POWER)} power at the family's strictest "
            f"step: {shown}."
            + "".join(f" {label(a, labels)}: the same runs as {label(b, labels)}, counted once."
                      for a, b in f.same_runs))
    legend.append("Tuning budget: settings tried on validation (a tuning group's members, EASE's λ values "
                  "with the grid's extension and refinement, RP3β's α × β, a blend's weights plus what EASE "
                  "tried, and RP3β's too in RP3β + EASE; a group of blends, each member's weights plus "
                  "EASE's once; the largest over folds); 1: none.")
    legend.append(f"Best epoch: the epoch selected by validation {metric_title(key)}, of the epochs trained "
                  "(the first seed's; train.epochs passes, or more epochs where train.min_updates asks).")
    if (table["late_runs"].fillna(0) > 0).any():
        legend.append(f"{LATE_MARK} late: runs whose selected epoch lies in the last {percent(1 - LATE)} of "
                      "their epochs (any fold, any seed), so they may still have been improving: more epochs "
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
