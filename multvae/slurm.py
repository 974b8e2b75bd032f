"""A study as Slurm jobs, written from the study itself so that the array cannot go stale.

Three jobs share one DVC remote: `prepare` (download and split, pushed; its dvc.lock handed on, so
that only it reads the data's source), `train` (a job array with
one task per train stage, each in its own clone, pushing its outputs and run-cache entry; a task
killed at its time limit is requeued and resumes from its checkpoint), and `finish` (after every
task: restores the trained stages from the run-cache, evaluates, runs the baselines and
aggregates). `submit.sh` chains them with `afterok`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from multvae.errors import MultVAEError
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

# The data is fetched once, by the prepare job, which hands on its dvc.lock: the other jobs pull
# data/raw and the split by it, so the download stage (which runs on every repro) finds its input
# already there and no compute node needs the internet.
_HANDED_ON = "cp {lock} dvc.lock && dvc pull -q download prepare\n"


def job_files(read: Params, res: Resources, repo: str, commit: str, venv: str, remote: str,
              folder: str, checkpoints: str, compose: str | None = None) -> dict[str, str]:
    """`repo` is the workspace the jobs clone and where `finish` copies the results back; `folder`,
    shared by every node, holds the prepare job's dvc.lock; `compose`, a shell line each job runs
    in its clone to compose another study's params.yaml."""
    threads = read.runtime.threads
    if threads not in (0, res.cpus):
        raise MultVAEError(f"runtime.threads is {threads} but each train task gets {res.cpus} CPUs: set "
                           f"runtime.threads to 0 (torch takes the task's CPUs) or ask for {threads}")
    stages = [stage_name(r) for r in runs(read)]
    clone = _CLONE.format(repo=shlex.quote(repo), commit=shlex.quote(commit), venv=shlex.quote(venv),
                          remote=shlex.quote(remote)) + (compose + "\n" if compose else "")
    lock = shlex.quote(f"{folder}/prepare.lock")
    handed_on = _HANDED_ON.format(lock=lock)
    gpu = [f"#SBATCH --gres=gpu:{res.gpus}"] if res.gpus else []
    one_cpu = Resources(res.cpus, res.memory, res.time, 0, res.partition)
    prepare = (_header("multvae-prepare", one_cpu, ["#SBATCH --output=slurm-prepare-%j.out"]) + clone
               + f"dvc repro prepare && dvc push && cp dvc.lock {lock}\n")
    listed = "\n".join(f"  {shlex.quote(s)}" for s in stages)
    train = (_header("multvae-train", res, [f"#SBATCH --array=0-{len(stages) - 1}", "#SBATCH --requeue",
                                            "#SBATCH --signal=B:USR1@120",
                                            "#SBATCH --open-mode=append",  # a requeued task's log goes on
                                            "#SBATCH --output=slurm-train-%A_%a.out", *gpu])
             + f"# {len(stages)} train stages of study {read.study.name}: written by `multvae slurm`; "
               "rewrite after changing the study\n"
             + clone + handed_on
             + f"STAGES=(\n{listed}\n)\n"
             + 'STAGE="${STAGES[$SLURM_ARRAY_TASK_ID]}"\n'
             # A requeued task resumes from the checkpoint its killed run left in the shared folder.
             + f"mkdir -p {shlex.quote(checkpoints)} && rm -rf .checkpoints && "
               f"ln -s {shlex.quote(checkpoints)} .checkpoints\n"
             # USR1 comes two minutes before the time limit (or from `scancel --signal=USR1 --batch`):
             # stop the stage, so no process of this attempt still writes the shared checkpoint, then
             # queue the task again; the rerun resumes from the last checkpoint.
             + "trap 'kill -TERM -- -$RUN 2>/dev/null || true; wait $RUN || true; "
               'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; exit 0\' USR1\n'
             # setsid: the stage and its children form one process group, stopped together.
             # --pull: a run already in the remote (or its run-cache) is restored, not trained again.
             + 'setsid dvc repro --pull "$STAGE" & RUN=$!\n'
             + "wait $RUN\n"
             + "dvc push --run-cache\n")
    finish = (_header("multvae-finish", one_cpu, ["#SBATCH --output=slurm-finish-%j.out"]) + clone + handed_on
              + "dvc fetch --run-cache && dvc repro --pull && dvc push --run-cache\n"
              # another study than the workspace's brings back its own results folder only
              + (f"cp -r results metrics plots dvc.lock {shlex.quote(repo)}/\n" if compose is None else
                 f"cp -r results/{shlex.quote(read.study.name)} {shlex.quote(repo)}/results/\n"))
    submit = ("#!/usr/bin/env bash\n# Submit the study's jobs in order: prepare, the train array after it, "
              "finish after every task.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n"
              "PREPARE=$(sbatch --parsable prepare.sbatch)\n"
              "TRAIN=$(sbatch --parsable --dependency=afterok:$PREPARE train.sbatch)\n"
              "FINISH=$(sbatch --parsable --dependency=afterok:$TRAIN finish.sbatch)\n"
              'echo "prepare $PREPARE, train $TRAIN (' + str(len(stages)) + ' tasks), finish $FINISH"\n')
    return {"prepare.sbatch": prepare, "train.sbatch": train, "finish.sbatch": finish, "submit.sh": submit}
