"""`multvae extend-grids`: the point past a choice at a grid's end, written where both `dvc repro`
(params.yaml) and `dvc exp run` (conf/, composed by Hydra) read it, and the stop once the choice is
inside. Results are written directly, as evaluate would, so the choices are known."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose_params, shrink
from typer.testing import CliRunner

from multvae.grids import extensions, step_beyond, varying
from multvae.params import defaults, load_params
from multvae.results import Summary
from multvae.sealed import seal
from stages.cli import app

BASE, RUNTIME = defaults()


@pytest.mark.parametrize(("values", "end", "beyond"), [
    ([0.003, 0.01, 0.03, 0.06], 0.06, 0.12),    # step sizes: by the last ratio
    ([0.003, 0.01, 0.03, 0.06], 0.003, 0.0009),
    ([0.0025, 0.005, 0.01], 0.0025, 0.00125),   # RecVAE's γ
    ([0.3, 0.5, 0.7], 0.7, 0.9),                # dropout: even differences, so by the difference
    ([0.3, 0.5, 0.7], 0.3, 0.1),
    ([-1.0, 0.0, 1.0], 1.0, 2.0),               # not all positive: by the difference
])
def test_the_next_value_keeps_the_grids_own_spacing(values, end, beyond):
    assert step_beyond(values, end) == pytest.approx(beyond)


def test_a_two_dimensional_grid_moves_only_the_axis_at_its_end():

    grid = {f"cap_{c}_drop_{d}": replace(BASE, model=replace(BASE.model, dropout=d),
                                         beta=replace(BASE.beta, cap=c))
            for c in (0.1, 0.2) for d in (0.3, 0.5, 0.7)}
    overrides = {name: {"model": {"dropout": cfg.model.dropout}, "beta": {"cap": cfg.beta.cap}}
                 for name, cfg in grid.items()}
    settings = varying(grid)
    found = extensions("g", overrides, settings, {"cap_0.2_drop_0.5"})  # cap at its top, dropout inside
    assert [(e.member, e.axis, e.value) for e in found] == [("g_cap_0_4_dropout_0_5", "beta.cap", 0.4)]
    assert found[0].override == {"model": {"dropout": 0.5}, "beta": {"cap": 0.4}}
    assert extensions("g", overrides, settings, {"cap_0.1_drop_0.5"})[0].value == 0.05
    assert len(extensions("g", overrides, settings, {"cap_0.2_drop_0.7"})) == 2  # a corner: both axes


SPLIT = "0123456789abcdef"  # the fingerprint every result and the split's statistics name


@pytest.fixture
def project(tmp_path, monkeypatch):
    """conf/ with a two-point step-size grid, params.yaml composed from it, and no results yet."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base.pop("study")
    base["variants"] = {"lr_a": {"optim": {"lr": 0.001}}, "lr_b": {"optim": {"lr": 0.002}},
                        "drop_a": {"model": {"dropout": 0.3}}, "drop_b": {"model": {"dropout": 0.6}}}
    base["tuning"] = {"lr": ["lr_a", "lr_b"], "drop": ["drop_a", "drop_b"]}
    base["comparisons"], base["claims"] = {}, {}
    base["report"] = {"labels": {"lr": "Step size (β fixed)"}}
    (tmp_path / "conf" / "study").mkdir(parents=True)
    defaults = yaml.safe_load((REPO / "conf" / "config.yaml").read_text())["defaults"]
    config = {"defaults": defaults, **base}
    (tmp_path / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "conf" / "study" / "default.yaml").write_text("# @package _global_\n" + yaml.safe_dump(
        {"study": {"name": "default", "rows": ["lr_a", "lr_b", "drop_a", "drop_b"], "blends": []}}))
    compose_params(tmp_path)
    for folder in ("metrics/variants", "metrics/per_user", "dvclive", "data"):
        (tmp_path / folder).mkdir(parents=True)
    fold = {"fingerprint": SPLIT, "test_users": 30, "train_users": 240}
    (tmp_path / "data" / "stats.json").write_text(json.dumps(seal({"folds": {"0": fold}})))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _results(**validation_scores: float) -> None:
    for name, validation in validation_scores.items():
        _result(name, validation)


def _result(name: str, validation: float) -> None:
    metrics = {"ndcg@100": 0.3, "recall@20": 0.2, "recall@50": 0.3}
    summary = Summary(variant=name, kind="vae", metrics=metrics, validation={"val_ndcg@100": validation},
                      test_users=30, validation_by_fold={"0": validation}, best_epoch=5, epochs_trained=8,
                      seeds={"1": {**metrics, "best_epoch": 5, "epochs_trained": 8}})
    payload = {**summary.to_json(), "split": {"0": SPLIT}, "per_user_sha256": "none: no per-user file"}
    (Path("metrics/variants") / f"{name}.json").write_text(json.dumps(seal(payload)))


def test_a_choice_at_the_end_gets_the_next_point_until_it_is_inside(project):
    runner = CliRunner()
    _results(lr_a=0.30, lr_b=0.35, drop_a=0.36, drop_b=0.31)
    done = runner.invoke(app, ["extend-grids"])
    assert done.exit_code == 0, done.output
    assert "lr: lr_b is at the end of optim.lr; adding lr_lr_0_004" in done.output
    assert "drop: drop_a is at the end of model.dropout; adding drop_dropout_0_15" in done.output

    read = load_params("params.yaml")  # what `dvc repro` runs: the new points are rows and members
    assert read.config("lr_lr_0_004").optim.lr == 0.004
    assert read.config("drop_dropout_0_15").model.dropout == 0.15
    assert read.rows == ["lr_a", "lr_b", "lr_lr_0_004", "drop_a", "drop_dropout_0_15", "drop_b"]
    assert read.tuning["lr"] == ("lr_a", "lr_b", "lr_lr_0_004")
    written = (project / "params.yaml").read_text()
    assert "β" in written and "\\u03B2" not in written  # labels stay readable
    compose_params(project)  # what `dvc exp run` composes from conf/ holds the same
    composed = load_params(project / "params.yaml")
    assert composed.rows == read.rows and composed.tuning == read.tuning
    assert composed.variants == read.variants
    (project / "params.yaml").write_text(written)

    again = runner.invoke(app, ["extend-grids"])  # before the new points have results
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1].endswith(
        "no results for lr_lr_0_004, drop_dropout_0_15; run `dvc repro` first")

    _results(lr_lr_0_004=0.33, drop_dropout_0_15=0.32)  # both choices now inside
    inside = runner.invoke(app, ["extend-grids"])
    assert inside.exit_code == 0 and "every tuning choice is inside its grid" in inside.output
    assert load_params("params.yaml").rows == read.rows


@pytest.mark.parametrize(("new_scores", "closing"), [
    ({"lr_lr_0_004": 0.33}, "every tuning choice is inside its grid after 1 round(s)"),
    ({"lr_lr_0_004": 0.40}, "still at an end of its grid: lr (lr_lr_0_004); run again to extend further"),
])
def test_rounds_end_by_saying_whether_a_choice_is_still_at_an_end(project, monkeypatch, new_scores, closing):
    """After its last `dvc repro` (here a stand-in that writes the new point's result), the command
    says whether the new point moved the choice inside or the grid needs another round."""
    import subprocess

    import stages.tools.extend_grids as tool

    _results(lr_a=0.30, lr_b=0.35)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["tuning"] = {"lr": ["lr_a", "lr_b"]}
    params["study"]["rows"] = ["lr_a", "lr_b"]
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def repro(command, check):
        assert command == ["dvc", "repro"]
        _results(**new_scores)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(tool.subprocess, "run", repro)
    done = CliRunner().invoke(app, ["extend-grids", "--rounds", "1"])
    assert done.exit_code == 0, done.output
    assert done.output.strip().splitlines()[-1].endswith(closing)


def test_a_point_past_a_settings_range_is_not_added(project):
    _results(lr_a=0.35, lr_b=0.30, drop_a=0.31, drop_b=0.36)
    done = CliRunner().invoke(app, ["extend-grids"])
    assert done.exit_code == 0, done.output
    assert "drop: drop_b is at the end of model.dropout, but the next point is out of range" in done.output
    assert "adding lr_lr_0_0005" in done.output
    read = load_params("params.yaml")
    assert "lr_lr_0_0005" in read.variants and not any(v.startswith("drop_dropout") for v in read.variants)


@pytest.mark.slow
def test_extend_grids_rounds_train_only_the_new_point_through_dvc(tmp_path_factory, new_project, run, ran):
    """Through real `dvc repro`: a two-point grid's choice is at an end, one round adds the next
    point, and DVC trains and evaluates only that point (the others come from the cache)."""

    def edit(params: dict) -> None:
        shrink(params)
        params["variants"] = {"lr_a": {"optim": {"lr": 0.0001}}, "lr_b": {"optim": {"lr": 0.0002}}}
        params["tuning"] = {"lr": ["lr_a", "lr_b"]}
        params["comparisons"], params["claims"] = {}, {}
        params["study"] = {"name": "default", "rows": ["lr_a", "lr_b"]}

    repo = new_project(tmp_path_factory.mktemp("extend"), edit)
    run(["dvc", "repro"], repo)
    chosen = load_params(repo / "params.yaml").variants
    output = run(["multvae", "extend-grids", "--rounds", "1"], repo)
    new = [v for v in load_params(repo / "params.yaml").variants if v not in chosen]
    assert len(new) == 1 and f"adding {new[0]}" in output
    trained = {s for s in ran(output) if s.startswith(("train@", "evaluate@"))}
    assert trained == {f"train@{new[0]}-1-0", f"evaluate@{new[0]}"}
    assert (repo / "conf" / "extensions" / "default.yaml").is_file()
    assert new[0] in (repo / "metrics" / "table.md").read_text()
