"""Every variant's and baseline's test results side by side: the study's Table IX with intervals.

A point estimate alone cannot say whether an ablation changed anything, so each mean carries an
interval over test users and training runs, and each comparison declared in params.yaml
(`comparisons:`, one Holm family each) a paired test with its raw and adjusted p-values.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from multvae.results import ResultError
from multvae.rows import Result
from multvae.selection import best_by_fold
from multvae.stats import Estimate, holm, mean_estimate, paired_difference

POWER = 0.8  # of the tests behind each detectable difference
LATE = 0.9  # a run whose selected epoch is past this share of its epochs may still have been improving
_METRIC_TITLES = {"ndcg": "NDCG", "recall": "Recall"}


def label(name: str, labels: dict[str, str]) -> str:
    """The display name from report.labels in params.yaml, else the variant's own name."""
    return labels.get(name, name)


def percent(share: float) -> str:
    """A share as a percentage with the digits it has (0.975 is 97.5%, not 98%)."""
    return f"{share * 100:.4g}%"


def metric_title(metric: str) -> str:
    kind, _, k = metric.partition("@")
    return f"{_METRIC_TITLES.get(kind, kind)}@{k}"


def _seed_values(result: Result, metric: str) -> list[float]:
    return [float(v[metric]) for v in (result.summary.get("seeds") or {}).values()]


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
        chosen = set(best_by_fold(baselines).values())
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
