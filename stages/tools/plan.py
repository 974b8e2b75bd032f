"""`multvae plan`: the study's size before it runs: its runs, what this workspace already has, and
an estimate of the remaining time on this machine from a short probe of real updates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stages.common import ParamsOption, user_errors

if TYPE_CHECKING:
    from multvae.params import Params


def _pending(stages: list[str]) -> tuple[set[str], str]:
    """The stages `dvc status` says are not up to date (or that dvc.yaml does not have), and how
    that was decided."""
    try:
        from dvc.repo import Repo

        with Repo(".") as repo:
            status = repo.status()
            known = {stage.addressing for stage in repo.index.stages}
    except Exception as exc:  # noqa: BLE001 - not a DVC repository, or one DVC cannot read: say so
        return set(stages), f"every run counted as to run (dvc status: {type(exc).__name__})"
    return {s for s in stages if s in status or s not in known}, "dvc status"


def _another_study(stages: list[str]) -> tuple[set[str], str]:
    return set(stages), ("not the workspace's study: every run counted as to run; the run-cache may "
                         "restore some")


Status = Callable[[list[str]], tuple[set[str], str]]  # stages -> (those still to run, how that was told)


def study_and_status(params: Path, study: str | None) -> tuple[Params, Status]:
    """The study (the workspace's, or `study` composed) and how to tell which of its stages are
    still to run."""
    from multvae.params import load_params
    from stages.tools.study import composed

    if study is None:
        return load_params(params), _pending
    return composed(study), _another_study


@user_errors
def plan(
    params: ParamsOption = Path("params.yaml"),
    study: Annotated[str | None, typer.Option(
        help="Plan this study of conf/study/ instead (composed as `dvc exp run -S study=…` would).")] = None,
    probe_updates: Annotated[int, typer.Option(min=1, max=100,
                                               help="Updates timed per model and optimiser.")] = 5,
) -> None:
    """Print the study's runs, how many are done, and how long the rest take on this machine."""
    from multvae.plan import duration, estimate, find_shape, runs, stage_name
    from multvae.runtime import setup

    read, pending_of = study_and_status(params, study)
    device = setup(read.runtime)
    base = read.base
    shape = find_shape(read, Path.cwd())
    all_runs = runs(read)
    pending, how = pending_of([stage_name(r) for r in all_runs])
    typer.echo(f"study {read.study.name}: {len(read.rows)} rows × {len(base.train.seeds)} seeds × "
               f"{len(base.data.folds)} folds = {len(all_runs)} training runs")
    typer.echo(f"data: {shape.train_users:,} training users × {shape.items:,} items, "
               f"{shape.density:.2%} dense, {shape.validation_users:,} validation users ({shape.source})")
    typer.echo(f"done in this workspace: {len(all_runs) - len(pending)} of {len(all_runs)} ({how})")
    by_row, each, left = estimate(read, shape, pending, probe_updates, device)
    threads = read.runtime.threads or "all"
    typer.echo(f"probe on {device.type}, {threads} threads: {probe_updates} updates per model timed")
    for row in read.rows:
        todo = sum(1 for r in all_runs if r[0] == row and stage_name(r) in pending)
        typer.echo(f"  {row}: {by_row[row].update * 1000:.0f} ms an update, "
                   f"{by_row[row].validation:.2f} s a validation; {duration(each[row])} a run; "
                   f"{todo} to run")
    whole = sum(each[row] for row, *_ in all_runs)
    typer.echo(f"the whole study: about {duration(whole)} ({whole:.0f} s) of training; remaining: about "
               f"{duration(left)} ({left:.0f} s), one run at a time on this machine (evaluation, baselines "
               "and the split come on top)")
