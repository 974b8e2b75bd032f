"""`multvae run`: `dvc repro` (or `dvc exp run -S study=…`) with the study's plan first and a
study-level progress line as its training runs go (see multvae/progress.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, user_errors
from stages.tools.plan import study_and_status


@user_errors
def run(
    params: ParamsOption = Path("params.yaml"),
    study: Annotated[str | None, typer.Option(
        help="Run this study of conf/study/ as `dvc exp run -S study=…` (default: `dvc repro` of "
             "params.yaml's study).")] = None,
    probe_updates: Annotated[int, typer.Option(min=1, max=100,
                                               help="Updates timed per model for the estimate.")] = 5,
) -> None:
    """Run the study through DVC, saying first how big it is and then how far it has got."""
    from multvae.plan import PlanError, duration, estimate, find_shape, runs, stage_name
    from multvae.progress import StudyProgress
    from multvae.runtime import setup

    started = time.monotonic()
    read, pending_of = study_and_status(params, study)
    if study is None and (code := _stream(["dvc", "repro", "prepare"], lambda _: None)) != 0:
        raise typer.Exit(code)  # the split comes first, so that the plan has the data's shape
    stages = {stage_name(r): r[0] for r in runs(read)}
    pending, how = pending_of(list(stages))
    name = read.study.name
    head = f"[study {name}] {len(stages)} training runs, {len(stages) - len(pending)} up to date ({how})"
    try:
        shape = find_shape(read, Path.cwd())
    except PlanError as exc:
        typer.echo(f"{head}; no estimate yet ({exc})")
        progress = StudyProgress(name, dict.fromkeys(stages, 1.0), time.monotonic, started,
                                 planned_ahead=False)
    else:
        _, each, left = estimate(read, shape, pending, probe_updates, setup(read.runtime))
        todo = f"about {duration(left)} of training on this machine" if left > 0 else "nothing to train"
        typer.echo(f"{head}; {todo} (`multvae plan` for more)")
        progress = StudyProgress(name, {s: each[row] for s, row in stages.items()}, time.monotonic, started)
    command = ["dvc", "repro"] if study is None else ["dvc", "exp", "run", "-S", f"study={study}"]
    code = _stream(command, progress.line)
    typer.echo(progress.end())
    if code != 0:
        raise typer.Exit(code)


def _stream(command: list[str], status: Callable[[str], str | None]) -> int:
    """Run `command`, echoing its output line by line and the status line each may give rise to;
    its exit code."""
    # Unbuffered: each stage's own lines (epochs) come through as they are printed.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=env) as process:
        assert process.stdout is not None
        for text in process.stdout:
            sys.stdout.write(text)
            if (line := status(text)) is not None:
                typer.echo(line)
    return process.returncode
