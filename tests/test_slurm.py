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
                     "/shared/jobs", "/shared/ck")


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


def test_a_thread_count_other_than_the_tasks_cpus_is_refused(tmp_path):
    import yaml

    from multvae.errors import MultVAEError

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["runtime"]["threads"] = 8
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(MultVAEError, match="runtime.threads is 8 but each train task gets 4 CPUs"):
        _files(path)
    _files(path, Resources(cpus=8, memory="8G", time="01:00:00", gpus=0, partition=None))


def test_another_study_by_name_composes_in_every_job_and_brings_back_its_own_folder(tmp_path, monkeypatch):
    from multvae.plan import runs, stage_name
    from stages.tools.study import COMPOSE_COMMAND, composed

    monkeypatch.chdir(REPO)
    paper = composed("paper")
    files = job_files(paper, RES, "/repo", "abc123", "/repo/.venv", "/shared/cache", "/shared/jobs",
                      "/shared/ck", COMPOSE_COMMAND.format(study="paper"))
    for name in ("prepare.sbatch", "train.sbatch", "finish.sbatch"):
        assert "['study=paper']" in files[name]
    train = files["train.sbatch"]
    assert f"#SBATCH --array=0-{len(runs(paper)) - 1}" in train
    assert all(f"  {stage_name(r)}\n" in train for r in runs(paper))
    assert "cp -r results/paper /repo/results/" in files["finish.sbatch"]
    assert "dvc.lock /repo" not in files["finish.sbatch"]
    with pytest.raises(Exception, match="no conf/study/nope.yaml"):
        composed("nope")
