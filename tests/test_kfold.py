"""User-level K-fold evaluation: every user a test user exactly once, each fold its own split and
its own runs, and the results of all folds paired by user like a single split's."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import dump_params
from typer.testing import CliRunner

from multvae.config import ConfigError
from multvae.data import fingerprint, load_dataset
from multvae.params import defaults, load_config
from multvae.results import Expected, content_hash
from multvae.sealed import seal
from multvae.split import Split, SplitError, binarize, split
from stages.cli import app

BASE, RUNTIME = defaults()

METRICS = ["ndcg@100", "recall@20", "recall@50"]
KFOLD = replace(BASE.data, dataset="synthetic", heldout_users=30, seed=1, kfold=5, folds=(0, 1, 2, 3, 4))


def roles(result: Split) -> dict[str, set[int]]:
    users = result.users
    return {role: set(users.loc[users["role"] == role, "userId"]) for role in ("train", "validation", "test")}


def test_every_user_is_a_test_user_in_exactly_one_fold(tiny):
    ratings, movies = tiny
    folds = split(ratings, KFOLD, movies)
    everyone = set(binarize(ratings, KFOLD.min_rating, KFOLD.min_user_positives)["userId"])
    tested: list[int] = []
    sizes = []
    for fold, result in folds.items():
        r = roles(result)
        dropped = result.stats["heldout_users_dropped"]
        sizes.append(len(r["test"]) + dropped["test"])
        tested += sorted(r["test"])
        assert not r["test"] & r["validation"] and not r["train"] & (r["test"] | r["validation"])
        assert len(r["validation"]) + dropped["validation"] == 30, fold
        # The rest train: no kept user is without a role.
        assigned = len(r["train"]) + len(r["validation"]) + len(r["test"]) + sum(dropped.values())
        assert assigned == len(everyone)
    assert len(tested) == len(set(tested))  # nobody twice
    missing = everyone - set(tested)
    assert len(missing) == sum(r.stats["heldout_users_dropped"]["test"] for r in folds.values())
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(everyone)  # near-equal folds


def test_a_fold_is_the_same_whichever_other_folds_are_computed(tiny):
    """So adding a fold to data.folds leaves the other folds' data, and their trained runs, valid."""
    ratings, movies = tiny
    every = split(ratings, KFOLD, movies)
    alone = split(ratings, dataclasses.replace(KFOLD, folds=(3,)), movies)
    tables = {name: getattr(alone[3], name) for name in Split.TABLES}
    assert list(alone) == [3]
    assert fingerprint(tables) == fingerprint({name: getattr(every[3], name) for name in Split.TABLES})
    assert fingerprint(tables) != fingerprint({name: getattr(every[2], name) for name in Split.TABLES})


def test_one_fold_is_the_papers_single_split(tiny):
    """kfold 1: heldout_users test users, as many validation users (the default, unchanged)."""
    ratings, movies = tiny
    r = roles(split(ratings, replace(BASE.data, dataset="synthetic", heldout_users=30, seed=1), movies)[0])
    assert len(r["test"]) == len(r["validation"]) == 30


@pytest.mark.parametrize(("data", "message"), [
    ({"kfold": 3, "folds": [0, 3]}, r"data\.folds: expected fold numbers in 0\.\.2"),
    ({"kfold": 3, "folds": [1, 1]}, r"data\.folds: values repeat"),
    ({"kfold": 0}, r"data\.kfold: expected greater than or equal to 1"),
    ({"folds": [1]}, r"data\.folds: expected fold numbers in 0\.\.0"),
    ({"kfold": 2, "folds": [0], "split": "temporal"}, r"data\.kfold: folds split users"),
    ({"kfold": 2, "folds": ["0"]}, r"data\.folds\[0\]: expected a valid integer"),
])
def test_fold_parameters_are_checked(tmp_path, data, message):
    path = tmp_path / "params.yaml"
    path.write_text(dump_params({"data": data}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_too_many_validation_users_for_a_fold_is_refused(tiny):
    ratings, movies = tiny
    with pytest.raises(SplitError,
                       match=r"data\.heldout_users=200 .* data\.kfold=3 a fold holds 9[45] of the 284 users"):
        split(ratings, dataclasses.replace(KFOLD, heldout_users=200, kfold=3, folds=(0,)), movies)


def _invoke(*args: object) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def three_folds(tmp_path_factory, tiny_params) -> Path:
    """The stages of the pipeline run by hand on 3 folds of the tiny data, 2 seeds, 3 epochs."""
    root = tmp_path_factory.mktemp("kfold")
    params = root / "params.yaml"
    params.write_text(tiny_params(data={"kfold": 3, "folds": [0, 1, 2], "heldout_users": 20},
                                  train={"epochs": 3, "seeds": [1, 2]},
                                  comparisons={"vs_best_baseline": {"reference": "best_baseline",
                                                                    "rows": ["*"]}},
                                  study={"blends": ["original"]}))
    data = root / "data"
    _invoke("download", "-p", params, "--out", data / "raw", "--no-progress")
    _invoke("prepare", "-p", params, "--raw", data / "raw", "--out", data / "prepared", "--stats",
            data / "stats.json")
    for fold in (0, 1, 2):
        for seed in (1, 2):
            _invoke("train", "original", "-p", params, "--seed", seed, "--fold", fold, "--data",
                    data / "prepared", "--models", root / "models", "--logs", root / "dvclive",
                    "--checkpoints", root / "ckpt")
    metrics, per_user = root / "metrics" / "variants", root / "metrics" / "per_user"
    _invoke("evaluate", "original", "-p", params, "--data", data / "prepared", "--models", root / "models",
            "--metrics", metrics, "--per-user", per_user)
    _invoke("popularity", "-p", params, "--data", data / "prepared", "--metrics",
            metrics / "most_popular.json", "--per-user", per_user / "most_popular.parquet")
    _invoke("ease", "-p", params, "--data", data / "prepared", "--metrics", metrics / "ease.json",
            "--per-user", per_user / "ease.parquet", "--choice", root / "models" / "ease" / "lambda.json")
    _invoke("rp3beta", "-p", params, "--data", data / "prepared", "--metrics", metrics / "rp3beta.json",
            "--per-user", per_user / "rp3beta.parquet", "--choice", root / "models" / "rp3beta.json")
    _invoke("blend", "original", "-p", params, "--data", data / "prepared", "--models", root / "models",
            "--ease", root / "models" / "ease" / "lambda.json", "--metrics", metrics, "--per-user", per_user)
    _invoke("control-blend", "-p", params, "--data", data / "prepared", "--ease",
            root / "models" / "ease" / "lambda.json", "--rp3beta", root / "models" / "rp3beta.json",
            "--metrics", metrics, "--per-user", per_user)
    return root


def test_the_folds_results_cover_every_test_user_once_per_seed(three_folds):
    root = three_folds
    stats = json.loads((root / "data" / "stats.json").read_text())
    assert stats["kfold"] == 3 and list(stats["folds"]) == ["0", "1", "2"]
    assert stats["test_users_all_folds"] == sum(f["test_users"] for f in stats["folds"].values())
    tested: set[int] = set()
    for fold in (0, 1, 2):
        data = load_dataset(root / "data" / "prepared" / f"fold-{fold}")
        ids = set(data.user_ids(data.test.users).tolist())
        assert not ids & tested
        tested |= ids
        for seed in (1, 2):
            assert (root / "models" / "original" / f"fold-{fold}" / f"seed-{seed}.pt").is_file()
            log = root / "dvclive" / "original" / f"fold-{fold}" / f"seed-{seed}"
            assert (log / "metrics.json").is_file()
    for name in ("original", "most_popular", "ease"):
        summary = json.loads((root / "metrics" / "variants" / f"{name}.json").read_text())
        table = pd.read_parquet(root / "metrics" / "per_user" / f"{name}.parquet")
        assert summary["folds"] == [0, 1, 2]
        assert summary["test_users"] == len(tested) == stats["test_users_all_folds"]
        for _, rows in table.groupby("seed"):
            assert set(rows["userId"]) == tested and rows["userId"].is_unique
        assert summary["ndcg@100"] == pytest.approx(table.groupby("userId")["ndcg@100"].mean().mean())
    ease = json.loads((root / "metrics" / "variants" / "ease.json").read_text())
    assert list(ease["lambda"]) == list(ease["validation_by_fold"]) == ["0", "1", "2"]


def _aggregate(root: Path, params: Path, out: Path) -> None:
    """The aggregate stage on the three-fold project `root`, every output under `out`."""
    _invoke("aggregate", "-p", params, "--metrics-dir", root / "metrics" / "variants",
            "--per-user-dir", root / "metrics" / "per_user", "--curves-dir", root / "dvclive",
            "--table", out / "table.md", "--csv", out / "table.csv", "--summary", out / "summary.json",
            "--plots-dir", out, "--training", out / "training.csv", "--report", out / "report.html",
            "--stats", root / "data" / "stats.json", "--results-dir", out / "results",
            "--claims", out / "claims.json")


def test_the_table_pairs_every_user_of_every_fold(three_folds, tmp_path):
    root = three_folds
    out = tmp_path / "out"
    _aggregate(root, root / "params.yaml", out)
    table = pd.read_csv(out / "table.csv").set_index("variant")
    stats = json.loads((root / "data" / "stats.json").read_text())
    assert (table["test_users"] == stats["test_users_all_folds"]).all()
    assert np.isfinite(table.loc["original", "diff_vs_best_baseline"])
    # the blend against the control blend, its own family; nothing else is in it
    assert table["diff_vs_control_blend"].notna().tolist() == (table.index == "original_ease").tolist()
    # Three folds: the error is the spread of the three folds' results (2 degrees of freedom).
    assert table["runs_counted"].all()
    assert "under K-fold, the spread of the folds' results" in (out / "table.md").read_text()
    curves = pd.read_csv(out / "training.csv")
    assert set(map(tuple, curves[["fold", "seed"]].drop_duplicates().to_numpy())) == {
        (f, s) for f in (0, 1, 2) for s in (1, 2)}
    assert "fold 2: test_users" in (out / "report.html").read_text()
    # the per-fold differences: the mean of the folds' values is the table's Δ (equal-size folds aside)
    from multvae.figures import fold_differences
    from multvae.rows import load_results
    from multvae.selection import best_baseline

    study = next((out / "results").iterdir())
    assert (study / "fold_differences.png").read_bytes().startswith(b"\x89PNG")
    rows, choice = best_baseline(load_results(
        root / "metrics" / "variants", root / "metrics" / "per_user", root / "dvclive", METRICS,
        ["original"], Expected.of_study((0, 1, 2), (1, 2), stats, root / "data" / "stats.json")), METRICS)
    assert choice is not None
    results = {r.name: r for r in rows}
    reference = results.get("best_baseline") or results[choice.by_fold[0]]  # a row where the folds disagree
    by_fold = fold_differences(results["original"], reference, "ndcg@100")
    assert sorted(by_fold) == [0, 1, 2]
    users = table.loc["original", "test_users"]
    sizes = {k: v["test_users"] for k, v in stats["folds"].items()}
    weighted = sum(by_fold[int(k)] * n for k, n in sizes.items()) / users
    assert weighted == pytest.approx(table.loc["original", "diff_vs_best_baseline"], abs=1e-9)


def test_a_user_in_two_folds_results_is_refused(three_folds, tmp_path):
    """Results whose folds overlap (hand-edited, or from two different kfold settings) are refused."""
    from multvae.results import ResultError, summarize

    table = pd.read_parquet(three_folds / "metrics" / "per_user" / "most_popular.parquet")
    doubled = pd.concat([table, table.iloc[:1].assign(fold=1)], ignore_index=True)
    with pytest.raises(ResultError, match=r"user \d+ is a test user in more than one fold"):
        summarize("most_popular", "baseline", doubled, ["ndcg@100"], {})


def test_each_fold_chooses_its_tuning_member_on_its_own_validation_users(three_folds, tmp_path):
    """A grid of two: `b` has the better validation score in fold 1 only, and better test scores
    everywhere. The group's row takes fold 1's test users from `b` and the others from `original`."""
    from multvae.rows import load_results
    from multvae.selection import select_tuned

    root = three_folds
    metrics_dir, per_user_dir = tmp_path / "variants", tmp_path / "per_user"
    shutil.copytree(root / "metrics" / "variants", metrics_dir)
    shutil.copytree(root / "metrics" / "per_user", per_user_dir)
    summary = json.loads((metrics_dir / "original.json").read_text())
    validation = {f: v + (0.1 if f == "1" else -0.1) for f, v in summary["validation_by_fold"].items()}
    frame = pd.read_parquet(per_user_dir / "original.parquet")
    better = frame.assign(**{m: np.minimum(frame[m] + 0.01, 1.0) for m in METRICS})
    summary.update(variant="b", validation_by_fold=validation, per_user_sha256=content_hash(better),
                   **{m: float(better.groupby("userId")[m].mean().mean()) for m in METRICS})
    (metrics_dir / "b.json").write_text(json.dumps(seal(summary)))
    better.to_parquet(per_user_dir / "b.parquet")
    shutil.copytree(root / "dvclive" / "original", tmp_path / "dvclive" / "b")
    for log in (tmp_path / "dvclive" / "b" / "fold-0").glob("seed-*/plots/metrics/val_ndcg@100.tsv"):
        curve = pd.read_csv(log, sep="\t")  # b's own validation on fold 0: 0.1 below the original's
        curve.assign(**{"val_ndcg@100": curve["val_ndcg@100"] - 0.1}).to_csv(log, sep="\t", index=False)
    shutil.copytree(root / "dvclive" / "original", tmp_path / "dvclive" / "original")
    stats = root / "data" / "stats.json"
    seeds = tuple(int(s) for s in summary["seeds"])
    expected = Expected.of_study((0, 1, 2), seeds, json.loads(stats.read_text()), stats)
    results = load_results(metrics_dir, per_user_dir, tmp_path / "dvclive", METRICS, ["original", "b"],
                           expected)
    rows, choices = select_tuned(results, {"grid": ("original", "b")}, METRICS)
    assert choices["grid"].by_fold == {0: "original", 1: "b", 2: "original"}
    row = next(r for r in rows if r.name == "grid")
    assert row.per_user is not None and row.curves is not None
    assert row.summary["chosen"] == "by fold: original, b, original" and row.summary["tuning_budget"] == 2
    expected = pd.concat([frame[frame["fold"] != 1], better[better["fold"] == 1]])
    got = row.per_user.sort_values(["fold", "userId", "seed"], ignore_index=True)
    pd.testing.assert_frame_equal(
        got, expected.sort_values(["fold", "userId", "seed"], ignore_index=True)[got.columns])
    assert set(row.curves["fold"]) == {0, 1, 2}


def test_the_control_blend_is_each_baseline_alone_at_its_ends_and_counts_their_budgets(three_folds):
    """RP3β + EASE: per fold, weight 1 scores RP3β's own validation, weight 0 EASE's; a deterministic
    (baseline) row whose budget is its weights plus what EASE and RP3β tried."""
    metrics = three_folds / "metrics" / "variants"
    control, ease, rp3 = (json.loads((metrics / f"{n}.json").read_text())
                          for n in ("rp3beta_ease", "ease", "rp3beta"))
    assert control["kind"] == "baseline" and control["blend_of"] == ["rp3beta", "ease"]
    for fold in ("0", "1", "2"):
        grid = control["grid"][fold]
        assert grid["1"] == pytest.approx(rp3["validation_by_fold"][fold], abs=1e-9)
        assert grid["0"] == pytest.approx(ease["validation_by_fold"][fold], abs=1e-9)
        assert control["validation_by_fold"][fold] == max(grid.values())
        assert control["lambda"][fold] == ease["lambda"][fold]
        assert (control["alpha"][fold], control["beta"][fold]) == (rp3["alpha"][fold], rp3["beta"][fold])
    assert control["tuning_budget"] == 11 + ease["tuning_budget"] + rp3["tuning_budget"]


def test_the_best_baseline_is_chosen_on_each_folds_validation_users(three_folds, tmp_path):
    """Most-popular made best on fold 1's validation only: comparisons with best_baseline take fold
    1's test users from it and the other folds' from the baseline each of them chose."""
    from multvae.config import ComparisonConfig, EvalConfig
    from multvae.rows import load_results
    from multvae.selection import best_baseline
    from multvae.table import build_table

    metrics_dir = tmp_path / "variants"
    shutil.copytree(three_folds / "metrics" / "variants", metrics_dir)
    control = json.loads((metrics_dir / "rp3beta_ease.json").read_text())
    control["validation_by_fold"] = {f: 1.0 for f in control["validation_by_fold"]}  # best, yet no candidate
    (metrics_dir / "rp3beta_ease.json").write_text(json.dumps(seal(control)))
    summary = json.loads((metrics_dir / "most_popular.json").read_text())
    summary["validation_by_fold"]["1"] = 0.99
    summary["val_ndcg@100"] = float(np.mean(list(summary["validation_by_fold"].values())))
    (metrics_dir / "most_popular.json").write_text(json.dumps(seal(summary)))
    stats = three_folds / "data" / "stats.json"
    expected = Expected.of_study((0, 1, 2), (1, 2), json.loads(stats.read_text()), stats)
    per_user, logs = three_folds / "metrics" / "per_user", three_folds / "dvclive"
    results = load_results(metrics_dir, per_user, logs, METRICS, ["original"], expected)
    rows, choice = best_baseline(results, METRICS)
    assert choice is not None and choice.by_fold[1] == "most_popular"
    others = {choice.by_fold[0], choice.by_fold[2]}
    assert others <= {"ease", "rp3beta"}  # the control blend is not a candidate, though best everywhere
    row = next(r for r in rows if r.name == "best_baseline")
    by_name = {r.name: r for r in results}
    for fold, name in choice.by_fold.items():
        got, want = row.per_user, by_name[name].per_user
        assert got is not None and want is not None
        got = got[got["fold"] == fold].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want[want["fold"] == fold].reset_index(drop=True))
    family = {"vs_best_baseline": ComparisonConfig(reference="best_baseline", rows=("*",))}
    _, families = build_table(rows, METRICS, EvalConfig(ks=(20, 50, 100), confidence=0.95), {}, family)
    assert families[0].reference == "best_baseline" and families[0].rows == ("original",)
    for name in ("most_popular", "rp3beta"):  # now EASE wins every fold: its own row is the reference
        summary = json.loads((three_folds / "metrics" / "variants" / f"{name}.json").read_text())
        summary["validation_by_fold"] = {f: 0.0 for f in summary["validation_by_fold"]}
        summary["val_ndcg@100"] = 0.0
        (metrics_dir / f"{name}.json").write_text(json.dumps(seal(summary)))
    agreeing, same = best_baseline(load_results(metrics_dir, per_user, logs, METRICS, ["original"], expected),
                                   METRICS)
    assert same is not None and set(same.by_fold.values()) == {"ease"}
    assert all(r.name != "best_baseline" for r in agreeing)
    _, families = build_table(agreeing, METRICS, EvalConfig(ks=(20, 50, 100), confidence=0.95), {}, family)
    assert families[0].reference == "ease"


def test_a_group_of_blends_counts_each_members_weights_and_eases_choice_once():
    from multvae.rows import Result
    from multvae.selection import group_budget

    def blend(name: str) -> Result:
        summary = {"tuning_budget": 24, "budget_parts": {"weight": 11, "ease": 13}}
        return Result(name, "vae", summary, None, None)

    assert group_budget([blend("a_ease"), blend("b_ease"), blend("c_ease")]) == 3 * 11 + 13
    assert group_budget([Result(n, "vae", {}, None, None) for n in "abc"]) == 3


def test_a_group_of_blends_stands_in_the_control_family_for_its_members(three_folds, tmp_path):
    """aggregate with `tuning: {blended: [original_ease]}`: the group's row replaces the blend in
    the table and in the family against RP3β + EASE; a group named like the control is refused."""
    from multvae.config import ComparisonConfig
    from multvae.results import ResultError
    from multvae.table import CONTROL_FAMILY, with_control_family

    root = three_folds
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tuning"] = {"blended": ["original_ease"]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    _aggregate(root, path, out)
    table = pd.read_csv(out / "table.csv").set_index("variant")
    assert "original_ease" not in table.index
    assert table["diff_vs_control_blend"].notna().tolist() == (table.index == "blended").tolist()
    assert table.loc["blended", "tuning_budget"] == table.loc["rp3beta_ease", "tuning_budget"] - \
        json.loads((root / "metrics" / "variants" / "rp3beta.json").read_text())["tuning_budget"]
    with pytest.raises(ResultError, match="tuning.rp3beta_ease: the name of a blend row"):
        with_control_family({}, ["original_ease"], {"rp3beta_ease": ("original_ease",)})
    with pytest.raises(ResultError, match=f"comparisons.{CONTROL_FAMILY}: the name of the family"):
        with_control_family({CONTROL_FAMILY: ComparisonConfig(reference="ease", rows=("*",))}, [], {})
    assert with_control_family({}, [], {}) == {}


def test_a_control_blend_made_at_another_rp3beta_setting_is_refused(three_folds, tmp_path):
    """RP3β's handed-over α edited, the control blend rerun on it: its α is not what RP3β's own
    results chose, and aggregate stops naming both."""
    from multvae.results import ResultError
    from multvae.rows import load_results

    root = tmp_path / "project"
    shutil.copytree(three_folds, root)
    choice = root / "models" / "rp3beta.json"
    handed = json.loads(choice.read_text())
    handed["alphas"] = {f: 2.0 for f in handed["alphas"]}
    choice.write_text(json.dumps(handed))
    metrics, per_user = root / "metrics" / "variants", root / "metrics" / "per_user"
    _invoke("control-blend", "-p", root / "params.yaml", "--data", root / "data" / "prepared", "--ease",
            root / "models" / "ease" / "lambda.json", "--rp3beta", choice, "--metrics", metrics,
            "--per-user", per_user)
    stats = root / "data" / "stats.json"
    expected = Expected.of_study((0, 1, 2), (1, 2), json.loads(stats.read_text()), stats)
    with pytest.raises(ResultError, match=r"rp3beta_ease\.json: blended at α .*, RP3β's results chose"):
        load_results(metrics, per_user, root / "dvclive", METRICS, ["original"], expected)
