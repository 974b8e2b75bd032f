"""DVC stage `aggregate`: every variant and baseline in one table (Markdown, CSV) and three figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stages.common import ParamsOption, distinct_paths, user_errors
from stages.result_folders import CurvesDirOption, MetricsDirOption, PerUserDirOption

if TYPE_CHECKING:
    from multvae.params import Params


def beta_spreads(read: Params, split_stats: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """β = γ·|x_u| at the 10th and 90th percentile training user of the first fold, for each row
    whose β is per user (none when the statistics predate the percentiles)."""
    folds: dict[str, Any] = split_stats.get("folds") or {}
    first: dict[str, Any] = next(iter(folds.values())) if folds else {}
    spread = first.get("train_user_positives")
    if not isinstance(spread, dict):
        return {}
    gammas = {name: read.config(name).beta for name in read.rows}
    return {name: (beta.gamma * spread["p10"], beta.gamma * spread["p90"])
            for name, beta in gammas.items() if beta.method == "user_scaled"}


PAPER_RESULTS = Path("data/ablation_paper_results.yaml")


@user_errors
def aggregate(
    params: ParamsOption = Path("params.yaml"),
    metrics_dir: MetricsDirOption = Path("metrics/variants"),
    per_user_dir: PerUserDirOption = Path("metrics/per_user"),
    curves_dir: CurvesDirOption = Path("dvclive"),
    table: Annotated[Path, typer.Option(help="Comparison table, as Markdown.")] = Path("metrics/table.md"),
    csv: Annotated[Path, typer.Option(help="Comparison table, as CSV.")] = Path("metrics/table.csv"),
    summary: Annotated[Path, typer.Option(
        help="The study's metrics for DVC: each row's key metric.")] = Path("metrics/summary.json"),
    claims: Annotated[Path, typer.Option(
        help="The claims' verdicts for DVC: how many hold, are contradicted, are not "
             "resolvable.")] = Path("metrics/claims.json"),
    plots_dir: Annotated[Path, typer.Option(help="Folder for the figures.")] = Path("plots"),
    training: Annotated[Path, typer.Option(
        help="Every variant's per-epoch log in one CSV (dvc plots).")] = Path("plots/training.csv"),
    report: Annotated[Path, typer.Option(help="Self-contained HTML page of the study.")] = Path(
        "metrics/report.html"),
    stats: Annotated[Path, typer.Option(help="The split's statistics (names the dataset).")] = Path(
        "data/stats.json"),
    results_dir: Annotated[Path, typer.Option(
        help="Folder of committed study results: <results>/<study.name>/ gets the table, summary, "
             "split statistics and the params it ran with.")] = Path("results"),
    paper_results: Annotated[Path | None, typer.Option(
        help="The ablation paper's printed results by row, giving each of its claims the paper's own "
             "difference [default: data/ablation_paper_results.yaml, if there].")] = None,
) -> None:
    """Test metrics with intervals, the declared comparisons and claims, curves and β schedules;
    results/<study>/ gets the tables, the params and the library versions they were made with."""
    from multvae.atomic import published
    from multvae.claims import check_claims, claims_markdown, verdict_counts
    from multvae.config import BEST_BASELINE, BLEND_SUFFIX, CONTROL_BLEND, EVERY_VAE_ROW
    from multvae.data import read_stats
    from multvae.environment import versions
    from multvae.figures import (
        plot_beta_schedules,
        plot_comparison,
        plot_differences,
        plot_fold_differences,
        plot_validation_curves,
        training_log,
    )
    from multvae.grids import varying
    from multvae.html_report import render
    from multvae.metrics import metric_names
    from multvae.paper_results import read_paper_results
    from multvae.params import load_params
    from multvae.record import params_record
    from multvae.results import Expected
    from multvae.rows import extra_files, load_results
    from multvae.selection import best_baseline, select_tuned
    from multvae.table import (
        build_table,
        key_metrics,
        label,
        metric_title,
        summary_metrics,
        with_control_family,
    )
    from multvae.table_markdown import family_titles, table_markdown

    figures = {"Test metrics with intervals": plots_dir / "comparison.png",
               "Paired differences": plots_dir / "differences.png",
               "Validation curves (every variant)": plots_dir / "validation_curves.png",
               "β schedules": plots_dir / "beta_schedules.png"}
    read = load_params(params)
    distinct_paths({"--params": params, "--metrics-dir": metrics_dir, "--per-user-dir": per_user_dir,
                    "--curves-dir": curves_dir, "--stats": stats,
                    **({"--paper-results": paper_results} if paper_results else {})},
                   {"--table": table, "--csv": csv, "--summary": summary, "--claims": claims,
                    "--training": training, "--report": report,
                    "--results-dir": results_dir / read.study.name,
                    **{f"--plots-dir ({p.name})": p for p in figures.values()}})
    record = params_record(read.text, read.path)  # checked before anything is written
    blends = {row + BLEND_SUFFIX: row for row in read.study.blends}
    cfg, order = read.base, [*read.rows, *blends]
    labels = {**{name: f"{label(row, read.report.labels)} + EASE (blend)"
                 for name, row in {**blends, CONTROL_BLEND: "rp3beta"}.items()},
              BEST_BASELINE: "Best baseline (chosen on each fold)", **read.report.labels}
    metrics = metric_names(cfg.eval.ks)
    split_stats = read_stats(stats)
    expected = Expected.of_study(cfg.data.folds, cfg.train.seeds, split_stats, stats)
    results = load_results(metrics_dir, per_user_dir, curves_dir, metrics, order, expected)
    for path in extra_files(metrics_dir, order):
        typer.echo(f"aggregate: {path} is not a row of study {read.study.name}: left out")
    notes = []  # what the study names but cannot show: said here and in the table's legend
    for name in [*order, *([CONTROL_BLEND] if blends else [])]:  # the control: each blend is compared with it
        if not (metrics_dir / f"{name}.json").is_file():
            notes.append(f"no {metrics_dir / f'{name}.json'}: {label(name, labels)} left out")
    for r in results:
        if r.per_user is None:
            notes.append(f"no {per_user_dir / f'{r.name}.parquet'}: {label(r.name, labels)} has no interval")
        seeds = len(r.summary.get("seeds") or {})
        if r.kind == "vae" and seeds < len(cfg.train.seeds):
            notes.append(f"{label(r.name, labels)} has {seeds} of the {len(cfg.train.seeds)} train.seeds")
        if r.kind == "vae" and r.curves is None and r.name not in blends:
            notes.append(f"no {curves_dir / r.name}/fold-*/seed-*: {label(r.name, labels)} not in the curves")
    notes += read.not_run()
    for line in notes:
        typer.echo(f"aggregate: {line}")
    dataset = str(split_stats.get("dataset", "unknown data"))
    # A comparison's reference stays a row when it is also a grid point, if the family has rows to compare.
    present = {*read.rows, *read.row_tuning}
    references = frozenset(c.reference for c in read.comparisons.values()
                           if any(r == EVERY_VAE_ROW or (r in present and r != c.reference) for r in c.rows))
    grids = {group: varying({m: read.config(blends.get(m, m)) for m in members})  # a blend: its VAE's
             for group, members in read.row_tuning.items()}
    rows, choices = select_tuned(results, read.row_tuning, metrics, references, grids)
    rows, best = best_baseline(rows, metrics)
    if best is not None and any(r.name == BEST_BASELINE for r in rows):  # folds chose differently: say so
        choices[BEST_BASELINE] = best
    comparisons = with_control_family(read.comparisons, list(blends), read.row_tuning)
    frame, families = build_table(rows, metrics, cfg.eval, labels, comparisons, expected.test_to_train)
    markdown = table_markdown(frame, metrics, cfg.eval, labels, dataset, families, choices, notes)
    named = {**{r.name: r for r in results}, **{r.name: r for r in rows}}  # tuning members too
    if paper_results is None and PAPER_RESULTS.is_file():
        paper_results = PAPER_RESULTS
    if paper_results is None:
        typer.echo(f"aggregate: no {PAPER_RESULTS}: claims not checked against the paper's own differences")
    printed = read_paper_results(paper_results) if paper_results is not None else None
    verdicts, unchecked = check_claims(read.claims, named, metrics, cfg.eval.confidence, frame, families,
                                       printed, expected.test_to_train)
    for line in unchecked:
        typer.echo(f"aggregate: claim {line}: not checked")
    verdict_table = claims_markdown(verdicts, labels, dataset, cfg.eval.confidence, unchecked)
    read.check_unchanged()
    study = results_dir / read.study.name
    summary_json = json.dumps(summary_metrics(frame, metrics[0], families), indent=2) + "\n"
    claims_json = json.dumps(verdicts, indent=2) + "\n"
    # DVC's metrics are numbers a reader compares at a glance; the full records go to results/<study>/.
    metrics_json = json.dumps(key_metrics(frame, metrics[0]), indent=2) + "\n"
    counts_json = json.dumps(verdict_counts(verdicts), indent=2) + "\n"
    # Every output is written aside first and all replace the old ones together: a failure anywhere
    # (a full disk, a figure that cannot be drawn) leaves the previous study's outputs as they were.
    with published() as out:
        out.file(table).write_text(markdown)
        out.file(summary).write_text(metrics_json)
        out.file(claims).write_text(counts_json)
        training_log(results).to_csv(out.file(training), index=False)
        frame.to_csv(out.file(csv), index=False)
        staged = {title: out.file(path) for title, path in figures.items()}
        plot_comparison(frame, metrics, staged["Test metrics with intervals"], cfg.eval.confidence, dataset)
        vs = family_titles(families, labels, metrics[0])
        titles = {f.name: f"Δ {metric_title(f.metric)} {vs[f.name]}" for f in families}
        plot_differences(frame, titles, staged["Paired differences"], cfg.eval.confidence, dataset)
        plot_validation_curves(results, metrics, staged["Validation curves (every variant)"], labels, dataset)
        plot_beta_schedules(results, staged["β schedules"], labels, dataset, beta_spreads(read, split_stats))
        out.file(report).write_text(render(dataset, markdown, verdict_table, staged, split_stats, record))
        folder = out.folder(study, "table.md")  # what a reproduction is compared against, committed
        records = {"table.md": markdown, "summary.json": summary_json, "claims.json": claims_json,
                   "claims.md": verdict_table, "params.yaml": record,
                   "environment.json": json.dumps(versions(), indent=2) + "\n"}
        for name, text in (*records.items(),
                           ("stats.json", json.dumps(split_stats, indent=2) + "\n")):
            (folder / name).write_text(text)
        frame.to_csv(folder / "table.csv", index=False)
        shutil.copyfile(staged["Paired differences"], folder / "differences.png")
        shutil.copyfile(staged["Validation curves (every variant)"], folder / "validation_curves.png")
        if len(cfg.data.folds) > 1:  # K-fold: each fold's difference, beside their mean
            plot_fold_differences(rows, families, titles,
                                  labels, folder / "fold_differences.png", dataset)
    typer.echo(markdown)
    typer.echo(verdict_table)
    typer.echo(f"aggregate: {len(frame)} rows -> {table}, {csv}, {summary}, {claims}, {report}, {study}/; "
               f"figures {', '.join(p.name for p in figures.values())} -> {plots_dir}")
