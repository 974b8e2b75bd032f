"""`multvae slurm`: the study's Slurm jobs, written from its stage list (see multvae/slurm.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, user_errors


@user_errors
def slurm(
    remote: Annotated[str, typer.Option(help="A DVC remote every node reaches (a shared folder, s3://…).")],
    params: ParamsOption = Path("params.yaml"),
    study: Annotated[str | None, typer.Option(
        help="Run this study of conf/study/ (each job composes it as `dvc exp run -S study=…` would); "
             "its results/<study>/ comes back.")] = None,
    out: Annotated[Path, typer.Option(
        help="Folder for the job scripts and the prepare job's dvc.lock; every node must reach it.")] = Path(
        "slurm"),
    cpus: Annotated[int, typer.Option(min=1, help="CPUs per train task (its torch threads).")] = 2,
    mem: Annotated[str, typer.Option(help="Memory per task, as Slurm's --mem.")] = "8G",
    time: Annotated[str, typer.Option(help="Time limit per task, as Slurm's --time.")] = "04:00:00",
    gpus: Annotated[int, typer.Option(min=0, help="GPUs per train task (0: CPU only).")] = 0,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    checkpoints: Annotated[Path | None, typer.Option(
        help="Shared folder for resume checkpoints (default: <out>/checkpoints).")] = None,
) -> None:
    """Write prepare.sbatch, train.sbatch (one array task per train stage), finish.sbatch, submit.sh."""
    from multvae.atomic import write_text
    from multvae.errors import MultVAEError
    from multvae.params import load_params
    from multvae.slurm import Resources, job_files
    from stages.tools.study import COMPOSE_COMMAND, composed

    read = load_params(params) if study is None else composed(study)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise MultVAEError("multvae slurm: not in a git repository with a commit; the jobs clone one")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", str(params), "dvc.yaml", "conf"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        raise MultVAEError(f"multvae slurm: commit {params}, dvc.yaml and conf/ first: the jobs run the "
                           f"committed study, and these differ ({dirty.splitlines()[0].strip()})")
    files = job_files(read, Resources(cpus, mem, time, gpus, partition), str(Path.cwd()),
                      head.stdout.strip(), str(Path(sys.prefix)), remote, str(out.resolve()),
                      str((checkpoints or out / "checkpoints").resolve()),
                      COMPOSE_COMMAND.format(study=study) if study else None)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_text(out / name, text)
        (out / name).chmod(0o755)
    tasks = files["train.sbatch"].split("--array=0-")[1].split("\n")[0]
    typer.echo(f"slurm: {', '.join(files)} -> {out}/; {int(tasks) + 1} train tasks; submit with "
               f"{out}/submit.sh")
