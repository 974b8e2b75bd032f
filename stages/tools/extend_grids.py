"""`multvae extend-grids`: add a grid point past each tuning choice that sits at an end of its grid.

Opt-in, outside the pipeline: a DVC matrix is fixed by params, so each new point is a new variant
written into params.yaml (which `dvc repro` reads) and into conf/extensions/<study>.yaml (which
`dvc exp run -S study=<study>` composes after the study's file), then trained, evaluated and cached
like any other row. With `--rounds N` it runs `dvc repro` after each extension and stops as soon
as every choice is inside its grid.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stages.common import ParamsOption, user_errors
from stages.result_folders import CurvesDirOption, MetricsDirOption, PerUserDirOption, StatsOption

if TYPE_CHECKING:
    from multvae.params import Params
    from multvae.selection import Choice

HEADER = ("# @package _global_\n"
          "# Grid points added by `multvae extend-grids` past choices at the end of their\n"
          "# grid (composed after conf/study/<study>.yaml); delete this file to undo.\n")


@user_errors
def extend_grids(
    params: ParamsOption = Path("params.yaml"),
    metrics_dir: MetricsDirOption = Path("metrics/variants"),
    per_user_dir: PerUserDirOption = Path("metrics/per_user"),
    curves_dir: CurvesDirOption = Path("dvclive"),
    stats: StatsOption = Path("data/stats.json"),
    conf: Annotated[Path, typer.Option(help="Hydra config folder (gets extensions/<study>.yaml).")] = Path(
        "conf"),
    rounds: Annotated[int, typer.Option(
        min=0, help="Extend, `dvc repro`, and again, at most this many times (0: extend once, "
                    "run nothing).")] = 0,
) -> None:
    """Add the next grid point past every tuning choice at an end of its grid; with --rounds, run it."""
    for round_ in range(max(rounds, 1)):
        added = _extend_once(params, metrics_dir, per_user_dir, curves_dir, stats, conf)
        if not added:
            typer.echo("extend-grids: every tuning choice is inside its grid")
            return
        if rounds == 0:
            typer.echo("extend-grids: run `dvc repro` to train the new points")
            return
        typer.echo(f"extend-grids: round {round_ + 1} of {rounds}: dvc repro")
        done = subprocess.run(["dvc", "repro"], check=False)
        if done.returncode != 0:
            raise typer.Exit(done.returncode)
    _, edges, _ = _choices_at_edges(params, metrics_dir, per_user_dir, curves_dir, stats)
    if edges:
        still = ", ".join(f"{group} ({', '.join(sorted(set(choice.by_fold.values())))})"
                          for group, choice in edges.items())
        typer.echo(f"extend-grids: stopped after {rounds} round(s); still at an end of its grid: {still}; "
                   "run again to extend further")
    else:
        typer.echo(f"extend-grids: every tuning choice is inside its grid after {rounds} round(s)")


Grids = dict[str, dict[str, dict[str, Any]]]  # group -> member -> the settings that vary in the group


def _choices_at_edges(params: Path, metrics_dir: Path, per_user_dir: Path, curves_dir: Path,
                      stats: Path) -> tuple[Params, dict[str, Choice], Grids]:
    """The params, the tuning choices (as the table makes them) at an end of their grid, and the grids."""
    from multvae.config import ConfigError
    from multvae.data import read_stats
    from multvae.grids import varying
    from multvae.metrics import metric_names
    from multvae.params import load_params
    from multvae.results import Expected, ResultError
    from multvae.rows import load_results
    from multvae.selection import select_tuned

    read = load_params(params)
    blended = [g for g, members in read.row_tuning.items() if set(members) <= set(read.blend_rows)]
    if blended:
        raise ConfigError(f"{params}: tuning.{blended[0]} chooses among blends, whose grid is their "
                          "variants': extend that group, then blend the new points (study.blends)")
    missing = [m for members in read.row_tuning.values() for m in members
               if not (metrics_dir / f"{m}.json").is_file()]
    if missing:
        raise ResultError(f"{metrics_dir}: no results for {', '.join(missing)}; run `dvc repro` first")
    metrics = metric_names(read.base.eval.ks)
    cfg = read.base
    expected = Expected.of_study(cfg.data.folds, cfg.train.seeds, read_stats(stats), stats)
    results = load_results(metrics_dir, per_user_dir, curves_dir, metrics, read.rows, expected)
    grids = {group: varying({m: read.config(m) for m in members})
             for group, members in read.row_tuning.items()}
    _, choices = select_tuned(results, read.row_tuning, metrics, frozenset(), grids)
    return read, {group: choice for group, choice in choices.items() if choice.edges}, grids


def _extend_once(params: Path, metrics_dir: Path, per_user_dir: Path, curves_dir: Path, stats: Path,
                 conf: Path) -> list[str]:
    import yaml

    from multvae.atomic import write_text
    from multvae.config import ConfigError
    from multvae.grids import extensions

    read, edges, grids = _choices_at_edges(params, metrics_dir, per_user_dir, curves_dir, stats)
    raw: dict[str, Any] = yaml.safe_load(read.text)
    rows = list(read.rows)
    added: dict[str, dict[str, Any]] = {}
    tuning: dict[str, list[str]] = {}
    for group, choice in edges.items():
        members = list(read.row_tuning[group])
        for ext in extensions(group, read.variants, grids[group], set(choice.by_fold.values())):
            if ext.member in read.variants:
                raise ConfigError(f"{params}: variants.{ext.member} exists but is not a member of "
                                  f"tuning.{group}; rename it or add it to the group")
            problem = _invalid(params, raw, ext.member, ext.override)
            if problem:
                typer.echo(f"extend-grids: {group}: {ext.beyond} is at the end of {ext.axis}, but the next "
                           f"point is out of range ({problem}): not added")
                continue
            typer.echo(f"extend-grids: {group}: {ext.beyond} is at the end of {ext.axis}; adding "
                       f"{ext.member} ({ext.axis} {ext.value:g})")
            added[ext.member] = ext.override
            members.append(ext.member)
            rows.insert(rows.index(ext.beyond) + 1, ext.member)
        if len(members) > len(read.row_tuning[group]):
            tuning[group] = members
    if not added:
        return []
    raw.setdefault("variants", {}).update(added)
    raw.setdefault("tuning", {}).update(tuning)
    raw.setdefault("study", {})["rows"] = rows
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    read.check_unchanged()
    extension_file = conf / "extensions" / f"{read.study.name}.yaml"
    kept: dict[str, Any] = {}
    if extension_file.is_file():
        kept = yaml.safe_load(extension_file.read_text()) or {}
    kept.setdefault("variants", {}).update(added)
    kept.setdefault("tuning", {}).update(tuning)
    kept.setdefault("study", {})["rows"] = rows
    extension_file.parent.mkdir(parents=True, exist_ok=True)
    write_text(extension_file, HEADER + yaml.safe_dump(kept, sort_keys=False, allow_unicode=True))
    write_text(params, text)
    typer.echo(f"extend-grids: {len(added)} point(s) -> {params}, {extension_file}")
    return list(added)


def _invalid(params: Path, raw: dict[str, Any], name: str, override: dict[str, Any]) -> str | None:
    """Why the params with variant `name` added would be refused (a dropout past 1, say), or None."""
    import yaml

    from multvae.config import ConfigError
    from multvae.params import load_params

    candidate = params.with_name(f".{params.name}.{name}")
    candidate.write_text(yaml.safe_dump({**raw, "variants": {**raw.get("variants", {}), name: override}},
                                        sort_keys=False))
    try:
        load_params(candidate)
        return None
    except ConfigError as exc:
        return str(exc).split(": ", 1)[-1]
    finally:
        candidate.unlink()
