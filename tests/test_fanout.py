"""Fan-out across machines on DVC's own machinery: two clones (standing in for two machines) each
train one variant and push with the run-cache to a shared remote; a third clone restores every
trained model with `dvc repro --pull` and trains nothing."""

from __future__ import annotations

import pytest
from conftest import shrink, two_rows

pytestmark = pytest.mark.slow

def test_two_workers_push_and_a_third_clone_trains_nothing(tmp_path, new_project, run, ran):

    def edit(params: dict) -> None:
        shrink(params, tastes=4, heldout_users=40)
        two_rows(params)

    origin = new_project(tmp_path / "origin", edit)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "pipeline"], origin)

    clones = {}
    for name in ("worker_a", "worker_b", "head"):
        run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path)
        clones[name] = tmp_path / name
    for worker, variant in (("worker_a", "original"), ("worker_b", "relu")):
        out = run(["dvc", "repro", f"train@{variant}-1-0"], clones[worker])
        assert f"train@{variant}-1-0" in ran(out)
        run(["dvc", "push", "--run-cache"], clones[worker])

    head = clones["head"]
    run(["dvc", "fetch", "--run-cache"], head)  # the run-cache entries (no checkout: no dvc.lock yet)
    out = run(["dvc", "repro", "--pull"], head)
    assert not {s for s in ran(out) if s.startswith(("train@", "prepare"))}, ran(out)
    for variant in ("original", "relu"):
        assert (head / "models" / variant / "fold-0" / "seed-1.pt").is_file()
        assert (head / "metrics" / "variants" / f"{variant}.json").is_file()
