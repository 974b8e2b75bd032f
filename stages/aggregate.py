"""DVC stage `aggregate`: every variant and baseline in one table (Markdown, CSV) and three figures."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, user_errors
from stages.result_folders import CurvesDirOption, MetricsDirOption, PerUserDirOption


@user_errors
def aggregate(
    params: ParamsOption = Path("params.yaml"),
    metrics_dir: MetricsDirOption = Path("metrics/variants"),
    per_user_dir: PerUserDirOption = Path("metrics/per_user"),
    curves_dir: CurvesDirOption = Path("dvclive"),
    table: Annotated[Path, typer.Option(help="Comparison table, as Markdown.")] = Path("metrics/table.md"),
    csv: Annotated[Path, typer.Option(help="Comparison table, as CSV.")] = Path("metrics/table.csv"),
    summary: Annotated[Path, typer.Option(
        help="Compact metrics for DVC: key metric, interval, Δ, p.")] = Path("metrics/summary.json"),
    claims: Annotated[Path, typer.Option(
        help="One verdict per claim of params.yaml `claims:` the study "
             "can check.")] = Path("metrics/claims.json"),
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
) -> None:
    """Test metrics with intervals, the declared comparisons and claims, curves and β schedules."""
    from multvae.atomic import atomic_dir, atomic_path, write_json, write_text
    from multvae.claims import check_claims, claims_markdown
    from multvae.config import BLEND_SUFFIX, EVERY_VAE_ROW, load_params
    from multvae.data import read_stats
    from multvae.figures import plot_beta_schedules, plot_comparison, plot_validation_curves, training_log
    from multvae.grids import varying
    from multvae.html_report import render
    from multvae.metrics import metric_names
    from multvae.record import params_record
    from multvae.table import (
        build_table,
        extra_files,
        label,
        load_results,
        select_tuned,
        summary_metrics,
        table_markdown,
    )

    read = load_params(params)
    record = params_record(read.text, read.path)  # checked before anything is written
    blends = {row + BLEND_SUFFIX: row for row in read.study.blends}
    cfg, order = read.base, [*read.rows, *blends]
    labels = {**{name: f"{label(row, read.report.labels)} + EASE (blend)" for name, row in blends.items()},
              **read.report.labels}
    metrics = metric_names(cfg.eval.ks)
    results = load_results(metrics_dir, per_user_dir, curves_dir, metrics, order)
    for path in extra_files(metrics_dir, order):
        typer.echo(f"aggregate: {path} is not a row of study {read.study.name}: left out")
    for name in order:
        if not (metrics_dir / f"{name}.json").is_file():
            typer.echo(f"aggregate: no {metrics_dir / f'{name}.json'}: {label(name, labels)} left out")
    for r in results:
        if r.per_user is None:
            typer.echo(f"aggregate: no {per_user_dir / f'{r.name}.parquet'}: {label(r.name, labels)} "
                       "without intervals")
        if r.kind == "vae" and r.curves is None and r.name not in blends:
            typer.echo(f"aggregate: no {curves_dir / r.name}/fold-*/seed-*: {label(r.name, labels)} "
                       "not in the curves")
    split_stats = read_stats(stats)
    dataset = str(split_stats.get("dataset", "unknown data"))
    # A comparison's reference stays a row when it is also a grid point, if the family has rows to compare.
    present = {*read.rows, *read.row_tuning}
    references = frozenset(c.reference for c in read.comparisons.values()
                           if any(r == EVERY_VAE_ROW or (r in present and r != c.reference) for r in c.rows))
    grids = {group: varying({m: read.config(m) for m in members})
             for group, members in read.row_tuning.items()}
    rows, choices = select_tuned(results, read.row_tuning, metrics, references, grids)
    frame, families = build_table(rows, metrics, cfg.eval, labels, read.comparisons)
    markdown = table_markdown(frame, metrics, cfg.eval, labels, dataset, families, choices)
    named = {**{r.name: r for r in results}, **{r.name: r for r in rows}}  # tuning members too
    verdicts, unchecked = check_claims(read.claims, named, metrics, cfg.eval.confidence)
    for line in unchecked:
        typer.echo(f"aggregate: claim {line}: not checked")
    verdict_table = claims_markdown(verdicts, labels, dataset, cfg.eval.confidence)
    read.check_unchanged()
    write_text(table, markdown)
    write_json(summary, summary_metrics(frame, metrics[0], families))
    write_json(claims, verdicts)
    with atomic_path(training) as tmp:
        training_log(results).to_csv(tmp, index=False)
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    plot_comparison(frame, metrics, plots_dir / "comparison.png", cfg.eval.confidence, dataset)
    plot_validation_curves(results, metrics, plots_dir / "validation_curves.png", labels, dataset)
    plot_beta_schedules(results, plots_dir / "beta_schedules.png", labels, dataset)
    figures = {"Test metrics with intervals": plots_dir / "comparison.png",
               "Validation curves (every variant)": plots_dir / "validation_curves.png",
               "β schedules": plots_dir / "beta_schedules.png"}
    write_text(report, render(dataset, markdown, verdict_table, figures, split_stats, record))
    study = results_dir / read.study.name
    with atomic_dir(study) as tmp:  # what a reproduction is compared against, committed with git
        for written, name in ((table, "table.md"), (csv, "table.csv"), (summary, "summary.json"),
                              (claims, "claims.json")):
            shutil.copyfile(written, tmp / name)
        (tmp / "claims.md").write_text(verdict_table)
        (tmp / "params.yaml").write_text(record)
        write_json(tmp / "stats.json", split_stats)
    typer.echo(markdown)
    typer.echo(verdict_table)
    typer.echo(f"aggregate: {len(frame)} rows -> {table}, {csv}, {summary}, {claims}, {report}, {study}/; "
               f"figures comparison.png, validation_curves.png, beta_schedules.png -> {plots_dir}")
