"""`multvae slurm`: the job scripts come from the study, so the array is the study's train stages."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from multvae.params import load_params
from multvae.slurm import Resources, job_files

REPO = Path(__file__).resolve().parents[1]
RES = Resources(cpus=4, memory="8G", time="01:00:00", gpus=0, partition=None)


def _files(params: Path = REPO / "params.yaml", res: Resources = RES) -> dict[str, str]:
    return job_files(load_params(params), res, "/repo", "abc123", "/repo/.venv", "/shared/cache",
                     "/shared/ck")


def test_the_array_is_exactly_dvc_yamls_train_stages():
    from dvc.repo import Repo

    train = _files()["train.sbatch"]
    listed = re.search(r"STAGES=\(\n(.*?)\n\)", train, re.S)
    assert listed
    stages = [line.strip() for line in listed.group(1).splitlines()]
    with Repo(str(REPO)) as repo:
        expected = [s.addressing for s in repo.index.stages if s.addressing.startswith("train@")]
    assert sorted(stages) == sorted(expected)
    assert f"#SBATCH --array=0-{len(expected) - 1}" in train


def test_the_jobs_chain_and_ask_for_what_was_given():
    files = _files(res=Resources(cpus=4, memory="8G", time="01:00:00", gpus=1, partition="gpu"))
    train = files["train.sbatch"]
    assert "#SBATCH --cpus-per-task=4" in train and "#SBATCH --gres=gpu:1" in train
    assert "#SBATCH --partition=gpu" in train and "#SBATCH --requeue" in train
    assert "scontrol requeue" in train and "ln -s /shared/ck .checkpoints" in train
    assert "git checkout -q abc123" in train and 'export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK"' in train
    assert "--gres" not in files["prepare.sbatch"] + files["finish.sbatch"]
    submit = files["submit.sh"]
    assert submit.index("prepare.sbatch") < submit.index("afterok:$PREPARE train.sbatch")
    assert "afterok:$TRAIN finish.sbatch" in submit


@pytest.mark.parametrize("name", ["prepare.sbatch", "train.sbatch", "finish.sbatch", "submit.sh"])
def test_every_script_is_valid_bash(name, tmp_path):
    script = tmp_path / name
    script.write_text(_files()[name])
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
