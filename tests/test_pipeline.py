"""The whole pipeline through real `dvc repro` / `dvc exp run` in a throw-away git repository."""

import json

import pytest
import yaml
from conftest import shrink, two_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory, new_project, run):

    def edit(params: dict) -> None:
        shrink(params, users=400, items=150, ratings_per_user=30.0, heldout_users=40, hidden_dims=(32,),
               latent_dim=8, epochs=3, seeds=(1, 2))
        params["beta"]["total_anneal_steps"] = 20
        two_rows(params)

    repo = new_project(tmp_path_factory.mktemp("pipeline"), edit,
                       studies={"relu_only": {"study": {"name": "relu_only", "rows": ["relu"]}}})
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    return repo


def metrics(repo, name):
    return json.loads((repo / "metrics" / "variants" / f"{name}.json").read_text())


def test_repro_writes_every_variant_table_and_plots(repo):
    for name in ("original", "relu"):
        m = metrics(repo, name)
        assert {"ndcg@100", "recall@20", "recall@50", "best_epoch", "val_ndcg@100"} <= set(m)
        assert 1 <= m["best_epoch"] <= 3
        assert 0 < m["ndcg@100"] <= 1
    table = (repo / "metrics" / "table.md").read_text()
    assert "ReLU" in table and "Original" in table
    for png in ("comparison.png", "validation_curves.png", "beta_schedules.png"):
        assert (repo / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_second_repro_is_cached(repo, run, ran):
    assert ran(run(["dvc", "repro"], repo)) == {"download"}  # which finds its output current


def test_runtime_and_labels_change_nothing_cached(repo, run, ran):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edited = {**params, "runtime": {**params["runtime"], "threads": 2, "eval_batch_size": 7},
              "report": {"labels": {**params["report"]["labels"], "relu": "Rectifier"}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        # download runs on every repro (it hashes its source) and rewrites nothing; only the
        # table's labels depend on `report`.
        assert ran(run(["dvc", "repro"], repo)) == {"download", "aggregate"}
        assert "Rectifier" in (repo / "metrics" / "table.md").read_text()
    finally:
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "repro"], repo)


def test_metrics_show_is_one_short_table_of_numbers(repo, run):
    """DVC's metrics: each row's NDCG@100 and the claims' verdict counts, numbers only."""
    out = run(["dvc", "metrics", "show"], repo)
    header = out.splitlines()[0].split()
    assert {"original", "relu", "ease", "holds", "contradicted", "not_resolvable"} <= set(header)
    assert "metrics/summary.json" in out and "metrics/variants" not in out
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    values = [v for f in shown[""]["data"].values() for v in f["data"].values()]
    assert values and all(isinstance(v, (int, float)) for v in values)


def test_a_study_by_name_runs_its_rows_into_its_own_results_folder(repo, run, ran):
    """`dvc exp run -S study=<name>` composes params.yaml from conf/ (no file edited by hand); a row
    trained before is not trained again; each study's results land in results/<name>/ and the other
    studies' committed folders stay as they were."""
    default = (repo / "results" / "default" / "summary.json").read_text()
    assert set(json.loads(default)) == {"original", "relu", "most_popular", "ease", "rp3beta", "rp3beta_ease"}
    out = run(["dvc", "exp", "run", "-S", "study=relu_only"], repo)
    assert not {s for s in ran(out) if s.startswith(("train@", "evaluate@", "prepare"))}, ran(out)
    study = yaml.safe_load((repo / "params.yaml").read_text())["study"]
    assert study == {"name": "relu_only", "rows": ["relu"], "blends": []}
    assert set(json.loads((repo / "results" / "relu_only" / "summary.json").read_text())) == {
        "relu", "most_popular", "ease", "rp3beta", "rp3beta_ease"}
    assert (repo / "results" / "default" / "summary.json").read_text() == default
    run(["dvc", "exp", "run", "-S", "study=default"], repo)
    assert (repo / "results" / "default" / "summary.json").read_text() == default
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], repo)) == {}
    status = ["git", "status", "--porcelain", "--", "params.yaml", "dvc.lock", "results/default"]
    assert run(status, repo) == ""


def test_exp_run_user_scaled_changes_metrics_and_diff_reports_them(repo, run):
    before = metrics(repo, "original")
    out = run(["dvc", "exp", "run", "-S", "beta.method=user_scaled"], repo)
    assert "train@original" in out
    after = metrics(repo, "original")
    assert after["ndcg@100"] != before["ndcg@100"]
    diff = run(["dvc", "metrics", "diff", "--json"], repo)
    changed = json.loads(diff)["metrics/summary.json"]
    shown = round(after["ndcg@100"], 4) - round(before["ndcg@100"], 4)  # as metrics/summary.json rounds
    assert changed["original"]["diff"] == pytest.approx(shown)


def test_a_new_seed_trains_only_itself_and_summary_metrics_carry_intervals(repo, run, ran):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "before a third seed"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["seeds"] = [1, 2, 3]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stages = ran(run(["dvc", "repro"], repo))
        assert {s for s in stages if s.startswith("train@")} == {"train@original-3-0", "train@relu-3-0"}
        assert metrics(repo, "relu")["seeds"].keys() == {"1", "2", "3"}
        flat = (repo / "results" / "default" / "summary.json").read_text()
        assert '"p_holm"' in flat and '"low"' in flat
        assert ran(run(["dvc", "repro"], repo)) == {"download"}
    finally:
        params["train"]["seeds"] = [1, 2]
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "repro"], repo)
    # Back to the committed seeds: the seed-3 models still lie in models/ but are not used, so the
    # results are those of the commit, and identical runs show no metrics difference at all.
    assert (repo / "models" / "relu" / "fold-0" / "seed-3.pt").exists()
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], repo)) == {}


def test_folds_test_every_user_once_and_a_new_fold_trains_only_itself(repo, run, ran):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    try:
        params["data"].update(kfold=2, folds=[0])
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "repro"], repo)
        params["data"]["folds"] = [0, 1]
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stages = ran(run(["dvc", "repro"], repo))
        assert {s for s in stages if s.startswith("train@")} == {
            f"train@{v}-{s}-1" for v in ("original", "relu") for s in (1, 2)}
        stats = json.loads((repo / "data" / "stats.json").read_text())
        kept = stats["users_kept"]
        dropped = sum(f["heldout_users_dropped"]["test"] for f in stats["folds"].values())
        for name in ("original", "relu", "most_popular", "ease"):
            assert metrics(repo, name)["test_users"] == stats["test_users_all_folds"] == kept - dropped
    finally:
        params["data"].update(kfold=1, folds=[0])
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        # Back to the committed split: DVC's run-cache restores the models trained on it.
        assert not {s for s in ran(run(["dvc", "repro"], repo)) if s.startswith("train@")}
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], repo)) == {}


def test_plots_show_overlays_every_variant_and_seed_in_one_chart(repo, run):
    out = json.loads(run(["dvc", "plots", "show", "--json"], repo))
    assert not out.get("errors"), out.get("errors")
    for title in ("Validation NDCG@100", "Validation Recall@20", "Validation Recall@50", "Training loss",
                  "KL weight β"):
        [chart] = out["data"][title]
        values = chart["content"]["data"]["values"]
        assert {(v["variant"], str(v["fold"]), str(v["seed"])) for v in values} == {
            (variant, "0", seed) for variant in ("original", "relu") for seed in ("1", "2")}
        encoding = chart["content"]["encoding"]
        assert encoding["color"]["field"] == "variant"
        assert [d["field"] for d in encoding["detail"]] == ["fold", "seed"]
        assert encoding["x"]["title"] == "epoch"


def test_a_local_source_is_tracked_by_content_and_found_from_a_temporary_experiment(repo, run, ran):
    """Last: it switches the repository to a local ratings file."""
    from multvae.config import SYNTHETIC_PRESETS
    from multvae.synthetic import generate

    (repo / "external").mkdir()
    (repo / ".gitignore").write_text("/external\n")  # untracked: not copied into --temp workspaces
    ratings, _ = generate(SYNTHETIC_PRESETS["tiny"])
    source = repo / "external" / "ratings.csv"
    ratings.to_csv(source, index=False)
    run(["git", "add", ".gitignore"], repo)
    run(["git", "commit", "-qm", "ignore external"], repo)
    local = ["-S", "data.source=external/ratings.csv", "-S", "data.dataset=auto",
             "-S", "data.heldout_users=30"]
    out = run(["dvc", "exp", "run", "--temp", *local], repo)  # runs in <repo>/.dvc/tmp/exps/...
    assert "train@original" in out

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="external/ratings.csv", dataset="auto", heldout_users=30)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    before = json.loads((repo / "data" / "stats.json").read_text())
    assert before["dataset"] == "custom: ratings.csv"
    assert ran(run(["dvc", "repro"], repo)) == {"download"}

    ratings.iloc[: len(ratings) // 2].to_csv(source, index=False)  # other bytes, same path
    expected = {"download", "prepare", "train@original-1-0", "train@original-2-0"}
    assert expected <= ran(run(["dvc", "repro"], repo))
    after = json.loads((repo / "data" / "stats.json").read_text())
    assert after["ratings"] < before["ratings"]
    recorded = json.loads((repo / "data" / "raw" / "source.json").read_text())["input"]
    assert recorded["size"] == source.stat().st_size
