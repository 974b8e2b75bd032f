"""A study as Slurm jobs, written from the study itself so that the array cannot go stale.

Three jobs share one DVC remote: `prepare` (download and split, pushed), `train` (a job array with
one task per train stage, each in its own clone, pushing its outputs and run-cache entry; a task
killed at its time limit is requeued and resumes from its checkpoint), and `finish` (after every
task: restores the trained stages from the run-cache, evaluates, runs the baselines and
aggregates). `submit.sh` chains them with `afterok`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from multvae.params import Params
from multvae.plan import runs, stage_name


@dataclass(frozen=True)
class Resources:
    """What each train task asks Slurm for."""

    cpus: int
    memory: str  # Slurm's --mem, e.g. "8G"
    time: str  # Slurm's --time, e.g. "02:00:00"
    gpus: int
    partition: str | None


def _header(name: str, res: Resources, extra: list[str]) -> str:
    lines = ["#!/usr/bin/env bash", f"#SBATCH --job-name={name}", f"#SBATCH --cpus-per-task={res.cpus}",
             f"#SBATCH --mem={res.memory}", f"#SBATCH --time={res.time}", *extra]
    if res.partition:
        lines.append(f"#SBATCH --partition={res.partition}")
    return "\n".join(lines) + "\n"


# Each job works in a clone of its own (one workspace, one `dvc repro`: DVC locks a workspace),
# on the commit the jobs were written from, with the shared cache as its remote.
_CLONE = """set -euo pipefail
WORK="${{SLURM_TMPDIR:-/tmp}}/multvae-${{SLURM_JOB_ID}}-${{SLURM_ARRAY_TASK_ID:-0}}"
rm -rf "$WORK" && git clone -q {repo} "$WORK" && cd "$WORK" && git checkout -q {commit}
. {venv}/bin/activate
dvc remote add -f -d --local jobs {remote}
export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK"   # runtime.threads 0: torch takes the task's CPUs
"""


def job_files(read: Params, res: Resources, repo: str, commit: str, venv: str, remote: str,
              checkpoints: str) -> dict[str, str]:
    """`repo` is the workspace the jobs clone and where `finish` copies the results back."""
    stages = [stage_name(r) for r in runs(read)]
    clone = _CLONE.format(repo=shlex.quote(repo), commit=shlex.quote(commit), venv=shlex.quote(venv),
                          remote=shlex.quote(remote))
    gpu = [f"#SBATCH --gres=gpu:{res.gpus}"] if res.gpus else []
    one_cpu = Resources(res.cpus, res.memory, res.time, 0, res.partition)
    prepare = (_header("multvae-prepare", one_cpu, ["#SBATCH --output=slurm-prepare-%j.out"]) + clone
               + "dvc repro prepare && dvc push --run-cache\n")
    listed = "\n".join(f"  {shlex.quote(s)}" for s in stages)
    train = (_header("multvae-train", res, [f"#SBATCH --array=0-{len(stages) - 1}", "#SBATCH --requeue",
                                            "#SBATCH --signal=B:USR1@120",
                                            "#SBATCH --output=slurm-train-%A_%a.out", *gpu])
             + f"# {len(stages)} train stages of study {read.study.name}: written by `multvae slurm`; "
               "rewrite after changing the study\n"
             + clone
             + f"STAGES=(\n{listed}\n)\n"
             + 'STAGE="${STAGES[$SLURM_ARRAY_TASK_ID]}"\n'
             # A requeued task resumes from the checkpoint its killed run left in the shared folder.
             + f"mkdir -p {shlex.quote(checkpoints)} && rm -rf .checkpoints && "
               f"ln -s {shlex.quote(checkpoints)} .checkpoints\n"
             # Two minutes before its time limit a task asks to be queued again; the rerun resumes.
             + 'trap \'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"\' USR1\n'
             # --pull: the split comes from the prepare job's run-cache entry, not recomputed
             + 'dvc repro --pull "$STAGE" & wait $!\n'
             + "dvc push --run-cache\n")
    finish = (_header("multvae-finish", one_cpu, ["#SBATCH --output=slurm-finish-%j.out"]) + clone
              + "dvc fetch --run-cache && dvc repro --pull && dvc push --run-cache\n"
              + f"cp -r results metrics plots dvc.lock {shlex.quote(repo)}/\n")
    submit = ("#!/usr/bin/env bash\n# Submit the study's jobs in order: prepare, the train array after it, "
              "finish after every task.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n"
              "PREPARE=$(sbatch --parsable prepare.sbatch)\n"
              "TRAIN=$(sbatch --parsable --dependency=afterok:$PREPARE train.sbatch)\n"
              "FINISH=$(sbatch --parsable --dependency=afterok:$TRAIN finish.sbatch)\n"
              'echo "prepare $PREPARE, train $TRAIN (' + str(len(stages)) + ' tasks), finish $FINISH"\n')
    return {"prepare.sbatch": prepare, "train.sbatch": train, "finish.sbatch": finish, "submit.sh": submit}
