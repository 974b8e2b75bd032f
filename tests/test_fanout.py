"""Fan-out across machines on DVC's own machinery: two clones (standing in for two machines) each
train one variant and push with the run-cache to a shared remote; a third clone restores every
trained model with `dvc repro --pull` and trains nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_two_workers_push_and_a_third_clone_trains_nothing(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, origin / name)
    for folder in ("multvae", "stages"):
        shutil.copytree(ROOT / folder, origin / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((origin / "params.yaml").read_text())
    synthetic = {"users": 300, "items": 120, "ratings_per_user": 25.0, "tastes": 4, "seed": 0}
    params["data"].update(dataset="synthetic", heldout_users=40, synthetic=synthetic)
    params["model"].update(hidden_dims=[16], latent_dim=4)
    params["train"].update(epochs=2, batch_size=50, seeds=[1])
    params["runtime"].update(device="cpu", threads=1)
    params["variants"] = {"original": {}, "relu": {"model": {"activation": "relu"}}}
    params["tuning"] = {}
    (origin / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], origin)
    run(["git", "config", "user.email", "ci@example.com"], origin)
    run(["git", "config", "user.name", "ci"], origin)
    run(["dvc", "init", "-q"], origin)
    shutil.copy(ROOT / ".dvc" / "config", origin / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", origin / ".dvc" / "plots")
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "pipeline"], origin)

    clones = {}
    for name in ("worker_a", "worker_b", "head"):
        run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path)
        clones[name] = tmp_path / name
    for worker, variant in (("worker_a", "original"), ("worker_b", "relu")):
        out = run(["dvc", "repro", f"train@{variant}-1"], clones[worker])
        assert f"train@{variant}-1" in ran(out)
        run(["dvc", "push", "--run-cache"], clones[worker])

    head = clones["head"]
    run(["dvc", "fetch", "--run-cache"], head)  # the run-cache entries (no checkout: no dvc.lock yet)
    out = run(["dvc", "repro", "--pull"], head)
    assert not {s for s in ran(out) if s.startswith(("train@", "prepare"))}, ran(out)
    for variant in ("original", "relu"):
        assert (head / "models" / variant / "seed-1.pt").is_file()
        assert (head / "metrics" / "variants" / f"{variant}.json").is_file()
