"""`multvae plan`: the study's runs, what the workspace has, and a time estimate from a probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import dump_params
from typer.testing import CliRunner

from multvae import plan as plan_module
from multvae.params import load_params
from multvae.plan import (
    PAPER_ML20M,
    PlanError,
    Probe,
    Shape,
    duration,
    estimate,
    find_shape,
    runs,
    stage_name,
)
from multvae.sealed import seal
from multvae.training import epoch_count, updates_per_epoch
from stages.cli import app

FOLD = {"train_users": 483, "items": 5584, "train_density": 0.013626, "validation_users": 60}
STATS = {"dataset": "ml-latest-small", "kfold": 1, "folds": {"0": FOLD}}


def _params(tmp_path: Path, **data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(dump_params({
        "data": {"dataset": "ml-latest-small", **data},
        "variants": {"original": {}, "scaled": {"beta": {"method": "user_scaled", "gamma": 0.004}}},
        "train": {"seeds": [1, 2]},
        "study": {"name": "s", "rows": ["original", "scaled"], "blends": []}}))
    return path


def test_the_runs_are_every_row_seed_and_fold_as_dvc_yaml_names_them(tmp_path):
    read = load_params(_params(tmp_path))
    assert [stage_name(r) for r in runs(read)] == [
        "train@original-1-0", "train@original-2-0", "train@scaled-1-0", "train@scaled-2-0"]


def test_the_shape_comes_from_the_split_then_the_committed_study_then_the_paper(tmp_path):
    read = load_params(_params(tmp_path))
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "stats.json").write_text(json.dumps(STATS))
    shape = find_shape(read, tmp_path)
    assert (shape.train_users, shape.items, shape.source) == (483, 5584, "results/s/stats.json")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stats.json").write_text(json.dumps(seal({**STATS, "kfold": 10})))  # another split
    assert find_shape(read, tmp_path).source == "results/s/stats.json"
    (tmp_path / "data" / "stats.json").write_text(json.dumps({**STATS, "kfold": 10}))  # edited by hand
    with pytest.raises(PlanError, match=r"stats\.json: its content hash does not match"):
        find_shape(read, tmp_path)
    (tmp_path / "data" / "stats.json").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    shape = find_shape(load_params(_params(empty, dataset="ml-20m")), empty)
    assert (shape.train_users, shape.items, shape.density, shape.validation_users) == PAPER_ML20M
    with pytest.raises(PlanError, match="run `dvc repro prepare` first"):
        find_shape(load_params(_params(empty, dataset="ml-1m")), empty)


def test_a_run_takes_its_updates_and_a_validation_an_epoch(tmp_path, monkeypatch):
    read = load_params(_params(tmp_path))
    shape = Shape(483, 5584, 0.0136, 60, "test")
    monkeypatch.setattr(plan_module, "probe", lambda cfg, shape, updates, device: Probe(0.01, 0.5))
    probes, each, left = estimate(read, shape, {"train@original-1-0"}, 3, None)  # type: ignore[arg-type]
    cfg = read.config("original")
    one = epoch_count(cfg, 483) * (updates_per_epoch(cfg, 483) * 0.01 + 0.5)
    assert each["original"] == pytest.approx(one) and left == pytest.approx(one)
    assert probes["original"] == Probe(0.01, 0.5)


@pytest.mark.parametrize("seconds, text", [(0, "nothing"), (59, "1 min"), (600, "10 min"),
                                           (3 * 3600, "3.0 h"), (5 * 86400, "5.0 days")])
def test_durations_read_in_the_unit_one_plans_in(seconds, text):
    assert duration(seconds) == text


def test_the_command_prints_the_runs_and_an_estimate(tmp_path, monkeypatch):
    params = _params(tmp_path)
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "stats.json").write_text(json.dumps(STATS))
    monkeypatch.chdir(tmp_path)  # not a DVC repository: every run is to run
    result = CliRunner().invoke(app, ["plan", "-p", str(params), "--probe-updates", "2"])
    assert result.exit_code == 0, result.output
    assert "2 rows × 2 seeds × 1 folds = 4 training runs" in result.output
    assert "done in this workspace: 0 of 4" in result.output
    assert "the whole study: about" in result.output and "remaining: about" in result.output
    assert "scaled:" in result.output
    unknown = CliRunner().invoke(app, ["plan", "--study", "nope"])
    assert unknown.exit_code == 1 and "--study nope: no conf/study/nope.yaml" in unknown.output
