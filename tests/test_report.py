"""The aggregate stage on fixture results: every row, the right significance marks, CSV, figures,
and errors that name the missing input."""

from __future__ import annotations

import json
import platform
import re
import shutil
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pytest
import scipy
import torch
import typer
import yaml
from conftest import dump_params
from typer.testing import CliRunner

from multvae.config import ComparisonConfig
from multvae.params import defaults
from multvae.results import Expected, content_hash
from multvae.rows import load_results
from multvae.sealed import seal
from multvae.selection import select_tuned
from multvae.table import build_table
from multvae.table_markdown import table_markdown
from stages.aggregate import aggregate
from stages.cli import app

BASE, RUNTIME = defaults()

METRICS = ["ndcg@100", "recall@20", "recall@50"]
# The project's own display labels: the table must take them from params.yaml's report section.
_LABELS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["report"][
    "labels"]
EVAL = replace(BASE.eval, confidence=0.95)
USERS = 300
PNG = b"\x89PNG\r\n\x1a\n"
VARIANTS = ["original", "latent_300", "two_hidden_layers", "relu", "sgd", "cyclical_cap_1",
            "cyclical_cap_0_2", "user_scaled"]
# name: (kind, planted shift of every metric against the original, training seeds)
SYSTEMS = {
    "original": ("vae", 0.0, [1]),
    "latent_300": ("vae", 0.0, [1]),
    "two_hidden_layers": ("vae", -0.03, [1]),
    "relu": ("vae", -0.05, [1]),
    "sgd": ("vae", -0.15, [1]),
    "cyclical_cap_1": ("vae", 0.0005, [1]),  # within the noise: 0.05 < p < 0.95
    "cyclical_cap_0_2": ("vae", -0.02, [1]),
    "user_scaled": ("vae", 0.01, [1, 2]),
    "most_popular": ("baseline", -0.2, [0]),
    "ease": ("baseline", 0.02, [0]),
    "my_extra": ("vae", 0.0, [1]),
}
REPORT = {"labels": {k: v for k, v in _LABELS.items() if k in SYSTEMS}}
WITHOUT_PER_USER = {"sgd"}
SPLIT = {"0": "0123456789abcdef"}  # the fingerprint of the split every result says it was computed on
EXPECTED = Expected(folds=(0,), seeds=(1, 2), split=SPLIT, test_users={"0": USERS})
COMPARISONS: dict[str, dict] = {"vs_original": {"reference": "original", "rows": ["*"]},
                                "vs_best_baseline": {"reference": "best_baseline", "rows": ["*"]}}
CLAIMS = {
    "relu_worse": {"row": "relu", "reference": "original", "expect": "worse", "source": "Table VII"},
    "user_scaled_worse": {"row": "user_scaled", "reference": "original", "expect": "worse", "source": "test"},
    "latent_300_worse": {"row": "latent_300", "reference": "original", "expect": "worse", "source": "test"},
    "recall_claim": {"row": "relu", "reference": "original", "expect": "worse", "metric": "recall@50",
                     "source": "test"},
    "sgd_worse": {"row": "sgd", "reference": "original", "expect": "worse", "source": "test"},  # no per-user
    "not_run": {"row": "rp3beta", "reference": "ease", "expect": "worse", "source": "test"},
}
NOT_SIGNIFICANT = {"latent_300", "cyclical_cap_1"}
SIGNIFICANT = {"two_hidden_layers", "relu", "cyclical_cap_0_2", "user_scaled", "most_popular", "ease"}


def _beta(name: str, epochs: np.ndarray) -> np.ndarray:
    if name.startswith("cyclical"):
        cap = 1.0 if name == "cyclical_cap_1" else 0.2
        return cap * np.minimum(1.0, (epochs % 4) / 2)
    if name == "user_scaled":
        return np.full(epochs.size, 0.6)
    return np.minimum(0.2, 0.02 * epochs)


def make_inputs(root: Path) -> dict[str, Path]:
    """Per-user metrics = a shared base + the planted shift + noise centred to mean zero, so a zero
    shift has a mean difference of exactly zero and any other shift is unmistakable."""
    rng = np.random.default_rng(0)
    dirs = {"metrics": root / "metrics/variants", "per_user": root / "metrics/per_user",
            "curves": root / "dvclive"}
    for d in dirs.values():
        d.mkdir(parents=True)
    base = {m: rng.uniform(0.3, 0.6, size=USERS) for m in METRICS}
    for name, (kind, shift, seeds) in SYSTEMS.items():
        frames = []
        for seed in seeds:
            frame = pd.DataFrame({"userId": np.arange(USERS) + 1000, "fold": 0, "seed": seed})
            for m in METRICS:
                noise = rng.normal(0, 0.01, size=USERS)
                frame[m] = base[m] + shift + noise - noise.mean()
            frames.append(frame)
        per_user = pd.concat(frames, ignore_index=True)
        summary = {"variant": name, "kind": kind, "val_ndcg@100": 0.4 + shift, "test_users": USERS,
                   "validation_by_fold": {"0": 0.4 + shift}, "folds": [0], "split": SPLIT,
                   "per_user_sha256": content_hash(per_user)}
        summary.update({m: float(per_user[m].mean()) for m in METRICS})
        if name == "ease":
            summary["lambda"] = 300.0  # chosen on validation: the table names it
        if kind == "vae":
            summary.update(best_epoch=7, seeds={
                str(seed): {**{m: float(f[m].mean()) for m in METRICS}, "best_epoch": 7,
                            "val_ndcg@100": 0.4 + shift} for seed, f in zip(seeds, frames, strict=True)})
            epochs = np.arange(10)
            curve = pd.concat([pd.DataFrame({
                "seed": seed, "epoch": epochs, "beta": _beta(name, epochs),
                "loss": 1.0, "nll": 1.0, "kl": 0.1,
                **{f"val_{m}": 0.4 + shift - 0.2 * np.exp(-epochs / 3) + 0.005 * i for m in METRICS},
                "seconds": 1.0}) for i, seed in enumerate(seeds)])
            for seed, frame in curve.groupby("seed"):
                folder = dirs["curves"] / name / "fold-0" / f"seed-{seed}" / "plots" / "metrics"
                folder.mkdir(parents=True)
                for column in frame.columns.drop(["seed", "epoch"]):  # DVCLive's layout
                    frame[["epoch", column]].rename(columns={"epoch": "step"}).to_csv(
                        folder / f"{column}.tsv", sep="\t", index=False)
        (dirs["metrics"] / f"{name}.json").write_text(json.dumps(seal(summary)))
        if name not in WITHOUT_PER_USER:
            per_user.to_parquet(dirs["per_user"] / f"{name}.parquet", index=False)
    params = root / "params.yaml"
    params.write_text(dump_params({
        "eval": {"confidence": EVAL.confidence},
        "train": {"seeds": [1, 2]},  # user_scaled has both, the other rows one: a partial table
        "variants": {name: {} for name in VARIANTS},
        "runtime": {"threads": 1, "device": "cpu"},  # how to run: left out of the study's record
        "report": REPORT,
        "comparisons": COMPARISONS,
        "claims": CLAIMS,
    }))
    dirs["params"] = params
    dirs["stats"] = root / "data" / "stats.json"
    dirs["stats"].parent.mkdir()
    dirs["stats"].write_text(json.dumps(seal({"dataset": "ml-1m", "test_users": USERS, "folds": {
        "0": {"test_users": USERS, "train_users": 4 * USERS, "fingerprint": SPLIT["0"]}}})))
    dirs["printed"] = root / "data" / "printed.yaml"  # a paper's printed results: none of these rows
    dirs["printed"].write_text("source: another paper\nrows:\n  original: {table: I, ndcg@100: 0.4}\n")
    return dirs


def run_stage(root: Path, dirs: dict[str, Path]):
    app = typer.Typer()
    app.command()(aggregate)
    return CliRunner().invoke(app, [
        "--params", str(dirs["params"]), "--metrics-dir", str(dirs["metrics"]),
        "--per-user-dir", str(dirs["per_user"]), "--curves-dir", str(dirs["curves"]),
        "--table", str(root / "metrics/table.md"), "--csv", str(root / "metrics/table.csv"),
        "--plots-dir", str(root / "plots"), "--stats", str(dirs["stats"]),
        "--summary", str(root / "metrics/summary.json"), "--report", str(root / "metrics/report.html"),
        "--training", str(root / "plots/training.csv"), "--results-dir", str(root / "results"),
        "--claims", str(root / "metrics/claims.json"), "--paper-results", str(dirs["printed"]),
    ])


def markdown_rows(text: str) -> dict[str, list[str]]:
    """Cells of each table row by its first cell; '\\|' inside a cell is not a column break."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Experiment"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    return make_inputs(tmp_path)


def test_stage_writes_the_table_csv_and_figures(tmp_path, inputs):
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    assert "sgd.parquet" in result.output  # the row without intervals is reported

    text = (tmp_path / "metrics/table.md").read_text()
    rows = markdown_rows(text)
    labels = ["Original model †", "Latent 300 †", "Two hidden layers [600, 400] †", "ReLU †",
              "Gradient descent (lr 0.001, untuned)",
              "Cyclical β (cap 1.0) †", "Cyclical β (cap 0.2) †", "β = γ·|x_u|", "Most popular",
              "EASE (λ = 300)"]
    assert list(rows) == labels
    assert text.splitlines()[0] == "# Test results across experimental settings: ml-1m"
    header = text.splitlines()[2]
    assert header.startswith("| Experiment | Test NDCG@100 | Test Recall@20 | Test Recall@50 | "
                             "Δ NDCG@100 vs Original model | p vs Original model | "
                             "Holm p vs Original model | Δ NDCG@100 vs EASE | p vs EASE | Holm p vs EASE | "
                             "Tuning budget |")
    titles = [c.strip() for c in header.split("|")[1:-1]]
    assert len(titles) == len(set(titles))  # every column has its own name
    assert len({len(cells) for cells in rows.values()}) == 1
    by_name = dict(zip([*VARIANTS, "most_popular", "ease"], rows.values(), strict=True))
    delta = 4
    for name in SIGNIFICANT - {"most_popular", "ease"}:
        assert by_name[name][delta].endswith("*"), name
    for name in NOT_SIGNIFICANT:
        assert "*" not in by_name[name][delta] and float(by_name[name][delta + 1]) > 0.05, name
    assert by_name["original"][delta] == "(reference)" and by_name["ease"][delta + 3] == "(reference)"
    assert by_name["most_popular"][delta] == "" and by_name["relu"][delta + 3].endswith("*")
    assert "[" not in by_name["sgd"][1] and by_name["sgd"][delta] == ""
    assert re.fullmatch(r"0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]", by_name["relu"][1])
    assert "±" in by_name["user_scaled"][-1] and by_name["relu"][-1] == ""
    # One seed on one fold: the run-to-run spread is unknown, and the row says so.
    assert "ReLU †" in rows and "β = γ·|x_u|" in rows and "†: trained once" in text
    assert "t intervals that count the 300 test users and the training runs" in text
    assert ("family `vs_original`, 6 comparisons" in text
            and "family `vs_best_baseline`, 7 comparisons" in text)
    assert "* marks Holm p < 0.05, so an interval may exclude 0 without a *" in text

    summary = json.loads((tmp_path / "results/default/summary.json").read_text())
    assert set(summary) == set(SYSTEMS) - {"my_extra"}
    # DVC's metrics: numbers only, each row's key metric as the table prints it, and verdict counts
    dvc_metrics = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert dvc_metrics == {name: round(values["ndcg"], 4) for name, values in summary.items()}
    assert json.loads((tmp_path / "metrics/claims.json").read_text()) == {
        "holds": 2, "contradicted": 1, "paper_effect_excluded": 0, "not_resolvable": 1}
    # A file of a row this study does not run (another study's) is named and left out.
    assert re.search(r"my_extra\.json is not a row of study default: left out", result.output)
    # The study's folder: what a reproduction is diffed against, with the params it ran with.
    study = tmp_path / "results" / "default"
    assert sorted(p.name for p in study.iterdir()) == [
        "claims.json", "claims.md", "differences.png", "environment.json", "params.yaml", "stats.json",
        "summary.json", "table.csv", "table.md", "validation_curves.png"]
    environment = json.loads((study / "environment.json").read_text())
    assert environment["python"] == platform.python_version()
    assert {k: environment[k] for k in ("torch", "numpy", "scipy", "pandas", "pyarrow", "dvc")} == {
        "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
        "pandas": pd.__version__, "pyarrow": pyarrow.__version__, "dvc": version("dvc")}
    assert json.loads((study / "summary.json").read_text()) == summary
    assert (study / "table.md").read_text() == text
    written = inputs["params"].read_text()
    record = (study / "params.yaml").read_text()
    assert "\nruntime:\n" in written and "runtime" not in record
    assert yaml.safe_load(record) == {k: v for k, v in yaml.safe_load(written).items() if k != "runtime"}
    assert "threads" not in (tmp_path / "metrics/report.html").read_text()
    assert text in result.output  # the command prints the table
    family = {"diff", "low", "high", "p", "p_holm"}
    assert set(summary["relu"]) == {"ndcg", "low", "high", "vs_original", "vs_best_baseline"}
    assert set(summary["relu"]["vs_original"]) == family
    assert set(summary["most_popular"]) == {"ndcg", "low", "high"}
    assert summary["relu"]["vs_original"]["diff"] == pytest.approx(-0.05)
    assert summary["relu"]["vs_original"]["p_holm"] >= summary["relu"]["vs_original"]["p"]
    assert set(summary["original"]) == {"ndcg", "low", "high", "vs_best_baseline"}
    assert summary["relu"]["low"] < summary["relu"]["ndcg"] < summary["relu"]["high"]

    table = pd.read_csv(tmp_path / "metrics/table.csv")
    for m in METRICS:
        assert {m, f"{m}_low", f"{m}_high", f"{m}_seeds_mean", f"{m}_seeds_std"} <= set(table.columns)
    for f in ("vs_original", "vs_best_baseline"):
        assert {f"diff_{f}", f"diff_{f}_low", f"diff_{f}_high", f"p_{f}", f"p_holm_{f}",
                f"detectable_{f}"} <= set(table.columns)
    assert {"variant", "label", "kind", "runs_counted", "tuning_budget", "best_epoch", "seeds",
            "test_users"} <= set(table.columns)
    assert len(table) == len(SYSTEMS) - 1  # my_extra is no row of the study
    assert table.set_index("variant")["ndcg@100_low"].isna().sum() == 1  # sgd only

    for name in ("comparison", "differences", "validation_curves", "beta_schedules"):
        data = (tmp_path / f"plots/{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    # the forest plot is committed with the study, and redrawing it from the committed table (what
    # `multvae redraw` does for a study whose inputs are elsewhere) gives the same figure
    committed = tmp_path / "results" / "default" / "differences.png"
    assert committed.read_bytes() == (tmp_path / "plots/differences.png").read_bytes()
    committed.unlink()
    redrawn = CliRunner().invoke(app, ["redraw", str(committed.parent)])
    assert redrawn.exit_code == 0, redrawn.output
    assert committed.read_bytes() == (tmp_path / "plots/differences.png").read_bytes()


def _table(inputs):
    results = load_results(inputs["metrics"], inputs["per_user"], inputs["curves"], METRICS, VARIANTS,
                           EXPECTED)
    table, families = build_table(results, METRICS, EVAL, REPORT["labels"], _comparisons())
    return table.set_index("variant"), families


def _comparisons():
    return {name: ComparisonConfig(reference=f["reference"], rows=tuple(f["rows"]))
            for name, f in COMPARISONS.items()}


def test_table_values(inputs):
    table, families = _table(inputs)
    assert [(f.name, f.reference) for f in families] == [("vs_original", "original"),
                                                         ("vs_best_baseline", "ease")]
    for m in METRICS:
        known = table[f"{m}_low"].notna()
        assert ((table.loc[known, f"{m}_low"] < table.loc[known, m])
                & (table.loc[known, m] < table.loc[known, f"{m}_high"])).all()
    relu = table.loc["relu"]
    assert relu["diff_vs_original"] == pytest.approx(-0.05)
    assert (relu["diff_vs_original_high"] < 0 and relu["p_vs_original"] < 1e-6
            and relu["p_holm_vs_original"] < 0.05)
    assert table.loc["latent_300", "p_vs_original"] > 0.99
    # Against the best baseline on validation (planted: EASE +0.02 over the original): VAE rows only.
    assert relu["diff_vs_best_baseline"] == pytest.approx(-0.07) and relu["diff_vs_best_baseline_high"] < 0
    assert table.loc["latent_300", "diff_vs_best_baseline"] == pytest.approx(-0.02)
    assert table.loc["user_scaled", "diff_vs_best_baseline"] == pytest.approx(-0.01)
    assert table[["diff_vs_best_baseline"]].loc[["ease", "most_popular", "sgd"]].isna().all().all()
    vae = table["diff_vs_best_baseline"].notna()
    assert vae.sum() == 7 and (table.loc[vae, "p_holm_vs_best_baseline"]
                               >= table.loc[vae, "p_vs_best_baseline"]).all()
    assert 0.1 < table.loc["cyclical_cap_1", "p_vs_original"] < 0.9
    assert table.loc["cyclical_cap_1", "p_holm_vs_original"] >= 0.05
    assert pd.isna(table.loc["original", "p_vs_original"]) and pd.isna(table.loc["sgd", "p_vs_original"])
    seeds = json.loads((inputs["metrics"] / "user_scaled.json").read_text())["seeds"]
    per_seed = [s["recall@20"] for s in seeds.values()]
    assert table.loc["user_scaled", "recall@20_seeds_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert table.loc["user_scaled", "seeds"] == 2 and pd.isna(table.loc["relu", "recall@20_seeds_std"])
    assert table.loc["relu", "best_epoch"] == 7 and pd.isna(table.loc["ease", "best_epoch"])
    assert table.loc["user_scaled", "runs_counted"] and not table.loc["relu", "runs_counted"]
    assert table.loc["ease", "runs_counted"]  # a deterministic baseline has no run-to-run spread


def test_claims_get_computed_verdicts(tmp_path, inputs):
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    claims = json.loads((tmp_path / "results/default/claims.json").read_text())
    assert {name: c["verdict"] for name, c in claims.items()} == {
        "relu_worse": "holds", "user_scaled_worse": "contradicted", "latent_300_worse": "not resolvable",
        "recall_claim": "holds"}
    assert [c["verdict_code"] for c in claims.values()] == [1, -1, 0, 1]
    assert (claims["relu_worse"]["diff"] == pytest.approx(-0.05)
            and claims["recall_claim"]["metric"] == "recall@50")
    # One comparison, one verdict: a claim inside a table family takes that family's Holm p (and so
    # its star); the recall claim, in no family, is alone in the `claims` family.
    table = pd.read_csv(tmp_path / "results/default/table.csv").set_index("variant")
    for name in ("relu_worse", "user_scaled_worse", "latent_300_worse"):
        claim = claims[name]
        assert claim["family"] == "vs_original"
        assert claim["p_holm"] == table.loc[claim["row"], "p_holm_vs_original"]
        assert claim["detectable"] == pytest.approx(table.loc[claim["row"], "detectable_vs_original"])
        starred = claim["p_holm"] < 0.05
        assert starred == (claim["verdict"] != "not resolvable")
    assert claims["recall_claim"]["family"] == "claims" and claims["recall_claim"]["p_holm"] == claims[
        "recall_claim"]["p"]
    assert "claim sgd_worse: no per-user results of sgd: not checked" in result.output
    assert "claim not_run: rp3beta not run in this study: not checked" in result.output
    rendered = (tmp_path / "results/default/claims.md").read_text()
    assert "| ReLU worse than Original model on NDCG@100 † | Table VII | -0.0500 [" in rendered
    assert "(`vs_original`) |" in rendered and "(`claims`) |" in rendered
    assert rendered.count("| holds |") == 2 and "| contradicted |" in rendered


def test_without_original_the_table_has_no_comparison(tmp_path, inputs):
    (inputs["metrics"] / "original.json").unlink()
    (inputs["per_user"] / "original.parquet").unlink()
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    assert "original.json" in result.output
    text = (tmp_path / "metrics/table.md").read_text()
    assert "vs Original model" not in text.splitlines()[2] and "Original model" not in markdown_rows(text)
    assert "p_vs_original" not in pd.read_csv(tmp_path / "metrics/table.csv").columns


@pytest.mark.parametrize("missing", ["metrics", "per_user", "curves"])
def test_a_missing_input_folder_is_named(tmp_path, inputs, missing):
    shutil.rmtree(inputs[missing])
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1
    assert f"{inputs[missing]} not found" in result.output
    assert not (tmp_path / "metrics/table.md").exists()


def test_unreadable_or_inconsistent_inputs_are_named(tmp_path, inputs):
    relu = inputs["metrics"] / "relu.json"
    relu.write_text("{not json")
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1 and str(relu) in result.output

    relu.unlink()
    frame = pd.read_parquet(inputs["per_user"] / "ease.parquet")
    frame.drop(columns="recall@50").to_parquet(inputs["per_user"] / "ease.parquet")
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1 and "ease.parquet" in result.output and "recall@50" in result.output

    frame.assign(**{"ndcg@100": frame["ndcg@100"] + 0.01}).to_parquet(inputs["per_user"] / "ease.parquet")
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1 and "ease.parquet: not the per-user table its metrics file" in result.output

    shifted = frame.assign(userId=frame["userId"] + 1)  # its own metrics file agrees: other users
    shifted.to_parquet(inputs["per_user"] / "ease.parquet")
    summary = json.loads((inputs["metrics"] / "ease.json").read_text())
    summary["per_user_sha256"] = content_hash(shifted)
    (inputs["metrics"] / "ease.json").write_text(json.dumps(seal(summary)))
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1 and "different test users" in result.output


def test_an_empty_metrics_folder_is_an_error(tmp_path, inputs):
    for path in inputs["metrics"].iterdir():
        path.unlink()
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 1 and str(inputs["metrics"]) in result.output


def test_holm_adjusts_each_family_on_its_own(inputs):
    table, _ = _table(inputs)
    for family in ("vs_original", "vs_best_baseline"):
        compared = table.dropna(subset=[f"p_{family}"]).sort_values(f"p_{family}")
        m = len(compared)
        expected = np.maximum.accumulate(
            np.minimum(1, (m - np.arange(m)) * compared[f"p_{family}"].to_numpy()))
        np.testing.assert_allclose(compared[f"p_holm_{family}"].to_numpy(), expected)


def test_a_tuning_group_shows_its_best_member_on_validation_only(tmp_path, inputs):
    params = yaml.safe_load(inputs["params"].read_text())
    params["variants"].update(sgd_lr_a={}, sgd_lr_b={})
    params["tuning"] = {"sgd_tuned": ["sgd_lr_a", "sgd_lr_b"]}
    params["study"]["rows"] += ["sgd_lr_a", "sgd_lr_b"]
    params["report"]["labels"]["sgd_tuned"] = "Gradient descent, lr tuned"
    inputs["params"].write_text(dump_params(params))
    for name, validation in (("sgd_lr_a", 0.30), ("sgd_lr_b", 0.35)):
        summary = json.loads((inputs["metrics"] / "relu.json").read_text())
        summary.update(variant=name, **{"val_ndcg@100": validation}, validation_by_fold={"0": validation})
        (inputs["metrics"] / f"{name}.json").write_text(json.dumps(seal(summary)))
        shutil.copy(inputs["per_user"] / "relu.parquet", inputs["per_user"] / f"{name}.parquet")
        shutil.copytree(inputs["curves"] / "relu", inputs["curves"] / name)
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "metrics/table.md").read_text()
    rows = markdown_rows(text)
    assert "Gradient descent, lr tuned (sgd_lr_b) †" in rows  # higher validation NDCG, whatever the test says
    assert not any("sgd_lr_a" in row for row in rows)
    assert "sgd_lr_a 0.3000, sgd_lr_b 0.3500" in text
    assert "sgd_tuned" in json.loads((tmp_path / "results/default/summary.json").read_text())


def test_the_html_report_is_self_contained(tmp_path, inputs):
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "metrics/report.html").read_text()
    assert "<h1>Mult-VAE study: ml-1m</h1>" in page and "β = γ·|x_u|" in page and "Holm p vs EASE" in page
    assert page.count('src="data:image/png;base64,') == 4
    # nothing is loaded from elsewhere: no URL in any src/href, no script, no external style sheet
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "confidence: 0.95" in page and "relu_worse" in page  # the exact parameters


def test_a_reference_that_is_also_a_grid_point_stays_a_row(inputs):
    """The tuned Mult-VAE grid holds the original model itself: both rows stay; where the group chose
    the original, the two are the same runs, so the family compares them once (not at all here)."""
    results = load_results(inputs["metrics"], inputs["per_user"], inputs["curves"], METRICS, VARIANTS,
                           EXPECTED)
    rows, choices = select_tuned(results, {"tuned": ("original", "relu")}, METRICS, frozenset({"original"}))
    names = [r.name for r in rows]
    assert "original" in names and "tuned" in names and "relu" not in names
    assert choices["tuned"].by_fold == {0: "original"}  # validation 0.40 beats relu's 0.35
    table, families = build_table(rows, METRICS, EVAL, REPORT["labels"], _comparisons())
    assert np.isnan(table.set_index("variant").loc["tuned", "diff_vs_original"])
    vs_original = next(f for f in families if f.name == "vs_original")
    assert "tuned" not in vs_original.rows and vs_original.same_runs == (("tuned", "original"),)
    best = next(f for f in families if f.name == "vs_best_baseline")
    assert ("tuned", "original") in best.same_runs and "original" in best.rows  # counted once there too
    assert table.set_index("variant").loc["tuned", "tuning_budget"] == 2


def test_a_choice_at_an_end_of_its_grid_is_flagged():
    from conftest import config_with

    from multvae.grids import edge_axes, varying

    configs = {f"g{g}": config_with(beta={"method": "user_scaled", "gamma": g})
               for g in (0.0025, 0.005, 0.01)}
    configs["d"] = config_with(model={"dropout": 0.3}, beta={"gamma": 0.005, "method": "user_scaled"})
    settings = varying(configs)
    assert settings["g0.01"] == {"beta.gamma": 0.01, "model.dropout": 0.5}
    assert edge_axes(settings, "g0.01") == ["beta.gamma", "model.dropout"]  # 0.5: the largest dropout tried
    assert edge_axes(settings, "g0.005") == ["model.dropout"]
    assert edge_axes(varying({k: configs[k] for k in ("g0.0025", "g0.005", "g0.01")}), "g0.005") == []
    assert edge_axes({"a": {}}, "a") == []


def test_the_table_names_a_tuning_choice_at_its_grid_edge(inputs):
    results = load_results(inputs["metrics"], inputs["per_user"], inputs["curves"], METRICS, VARIANTS,
                           EXPECTED)
    settings = {"grid": {"latent_300": {"model.latent_dim": 300}, "relu": {"model.latent_dim": 200},
                         "two_hidden_layers": {"model.latent_dim": 250}}}
    rows, choices = select_tuned(results, {"grid": ("relu", "two_hidden_layers", "latent_300")}, METRICS,
                                 settings=settings)
    assert choices["grid"].by_fold == {0: "latent_300"} and choices["grid"].edges == ("model.latent_dim",)
    row = next(r for r in rows if r.name == "grid")
    assert row.summary["chosen"] == "latent_300; at grid edge: model.latent_dim"
    text = table_markdown(build_table(rows, METRICS, EVAL, REPORT["labels"], {})[0], METRICS, EVAL,
                          REPORT["labels"], "ml-1m", [], choices)
    assert "at an end of the grid in model.latent_dim" in text


def test_a_claim_on_a_row_trained_once_is_marked(tmp_path, inputs):
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    rendered = (tmp_path / "results/default/claims.md").read_text()
    # relu has one seed on one fold: its run-to-run spread is unknown, and the verdict says so.
    assert "| ReLU worse than Original model on NDCG@100 † |" in rendered
    assert "- †: a row trained once on one fold" in rendered
    claims = json.loads((tmp_path / "results/default/claims.json").read_text())
    assert claims["relu_worse"]["runs_counted"] is False


def test_a_grid_of_one_is_one_row_when_its_family_has_nothing_to_compare(tmp_path, inputs):
    """ml1m_kfold's case: RecVAE's γ fixed as a grid of one, and the ablation family, whose reference
    is that grid point, has none of its rows in the study: the point is not shown twice."""
    params = yaml.safe_load(inputs["params"].read_text())
    params["tuning"] = {"grid": ["relu"]}
    params["study"] = {"name": "default", "rows": [v for v in VARIANTS if v != "cyclical_cap_1"]}
    params["comparisons"]["ablation"] = {"reference": "relu", "rows": ["cyclical_cap_1"]}
    inputs["params"].write_text(dump_params(params))
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    variants = pd.read_csv(tmp_path / "metrics/table.csv")["variant"].tolist()
    assert "grid" in variants and "relu" not in variants


def test_the_beta_figure_spreads_a_per_user_beta_over_the_training_users(tmp_path):
    from multvae.params import load_params
    from stages.aggregate import beta_spreads

    params = tmp_path / "params.yaml"
    params.write_text(dump_params({
        "variants": {"original": {}, "scaled": {"beta": {"method": "user_scaled", "gamma": 0.004}}},
        "study": {"name": "s", "rows": ["original", "scaled"], "blends": []}}))
    read = load_params(params)
    stats = {"folds": {"0": {"train_user_positives": {"p10": 12.0, "p50": 30.0, "p90": 95.0}}}}
    assert beta_spreads(read, stats) == {"scaled": (0.004 * 12.0, 0.004 * 95.0)}
    assert beta_spreads(read, {"folds": {"0": {}}}) == {}  # statistics from before the percentiles


def test_a_claim_and_its_table_cell_print_the_same_difference(tmp_path, inputs):
    """Both round once, from full precision (claims.md once rounded a 6-digit value again)."""
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    claims = json.loads((tmp_path / "results/default/claims.json").read_text())
    table = pd.read_csv(tmp_path / "metrics/table.csv").set_index("variant")
    claim = claims["relu_worse"]
    assert claim["diff"] == pytest.approx(table.loc["relu", "diff_vs_original"], abs=1e-12)
    row = next(line for line in (tmp_path / "results/default/claims.md").read_text().splitlines()
               if line.startswith("| ReLU worse"))
    cell = next(line for line in (tmp_path / "metrics/table.md").read_text().splitlines()
                if line.startswith("| ReLU †"))
    printed = f"{claim['diff']:+.4f}"
    assert printed in row and printed in cell


def test_a_claim_the_other_way_round_takes_its_familys_adjustment(tmp_path, inputs):
    """"EASE better than the original" is the vs_best_baseline comparison original − EASE, reversed:
    the same p and Holm p, the difference negated."""
    params = yaml.safe_load(inputs["params"].read_text())
    params["claims"] = {"ease_better": {"row": "ease", "reference": "original", "expect": "better",
                                        "source": "test"}}
    inputs["params"].write_text(dump_params(params))
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    claim = json.loads((tmp_path / "results/default/claims.json").read_text())["ease_better"]
    table = pd.read_csv(tmp_path / "results/default/table.csv").set_index("variant")
    assert claim["family"] == "vs_best_baseline"
    assert claim["p_holm"] == table.loc["original", "p_holm_vs_best_baseline"]
    assert claim["diff"] == pytest.approx(-table.loc["original", "diff_vs_best_baseline"], abs=1e-12)
    assert claim["p"] == pytest.approx(table.loc["original", "p_vs_best_baseline"], rel=1e-9)


def test_a_run_that_chose_an_epoch_in_its_last_tenth_is_flagged():
    from multvae.table import _late_runs
    from multvae.table_markdown import _epochs

    def log(fold: int, seed: int, scores: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"fold": fold, "seed": seed, "epoch": range(1, len(scores) + 1),
                             "val_ndcg@100": scores})

    early = [0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]  # best at epoch 2 of 10
    at_nine = [0.1] * 8 + [0.3, 0.2]  # epoch 9 of 10: not past 90%
    last = [0.1] * 9 + [0.3]  # epoch 10 of 10
    curves = pd.concat([log(0, 1, early), log(0, 2, at_nine), log(1, 1, last)], ignore_index=True)
    assert _late_runs(curves, "ndcg@100") == (3, 1)
    assert _late_runs(None, "ndcg@100") == (pd.NA, pd.NA)
    row = {"best_epoch": 2, "epochs_trained": 10, "diverged_runs": 0, "late_runs": 1, "runs_logged": 3}
    assert _epochs(row) == "2 / 10, ⚑ 1 of 3 late"
    assert _epochs({**row, "late_runs": 0}) == "2 / 10"


def test_a_claim_whose_papers_difference_the_data_exclude_says_so(tmp_path, inputs):
    """latent_300_worse is not resolvable (its interval holds 0); a printed difference far outside
    the interval is excluded, one inside it is not: 'paper's effect excluded' is apart from
    underpowered. Only claims from the printed paper get its difference."""
    inputs["printed"].write_text("source: test\nrows:\n  original: {table: I, ndcg@100: 0.9}\n"
                                 "  latent_300: {table: II, ndcg@100: 0.4}\n"
                                 "  cyclical_cap_1: {table: IV, ndcg@100: 0.9}\n")
    params = yaml.safe_load(inputs["params"].read_text())
    params["claims"] = {
        "far": CLAIMS["latent_300_worse"],
        "near": {"row": "cyclical_cap_1", "reference": "original", "expect": "worse", "source": "test"},
        "other_paper": {"row": "cyclical_cap_1", "reference": "original", "expect": "worse", "source": "B"},
    }
    inputs["params"].write_text(dump_params(params))
    result = run_stage(tmp_path, inputs)
    assert result.exit_code == 0, result.output
    claims = json.loads((tmp_path / "results/default/claims.json").read_text())
    far, near = claims["far"], claims["near"]
    assert far["paper_diff"] == pytest.approx(-0.5) and near["paper_diff"] == 0.0
    assert far["verdict"] == "paper's effect excluded" and far["verdict_code"] == 2
    assert far["p_holm"] >= 0.05 and far["p_paper_holm"] < 0.05 and not far["low"] <= -0.5 <= far["high"]
    assert near["verdict"] == "not resolvable" and near["low"] <= 0.0 <= near["high"]
    assert claims["other_paper"]["paper_diff"] is None and claims["other_paper"]["p_paper_holm"] is None
    assert json.loads((tmp_path / "metrics/claims.json").read_text())["paper_effect_excluded"] == 1
    rendered = (tmp_path / "results/default/claims.md").read_text()
    assert "| -0.5000 (" in rendered and "| paper's effect excluded |" in rendered


def test_unreadable_printed_results_stop_aggregate_with_one_line(tmp_path, inputs):
    inputs["printed"].write_text("source: test\nrows:\n  original: {table: I, ndcg@100: two}\n")
    result = run_stage(tmp_path, inputs)
    assert result.exit_code != 0
    assert "printed.yaml: rows.original.ndcg@100:" in result.output
    assert not (tmp_path / "results").exists()  # nothing written


def test_printed_results_named_but_missing_stop_aggregate_with_one_line(tmp_path, inputs):
    inputs["printed"].unlink()
    result = run_stage(tmp_path, inputs)
    assert result.exit_code != 0 and "printed.yaml not found: the paper's printed results" in result.output


def test_the_table_states_its_confidence_as_set_and_stars_at_that_level(inputs):
    """At confidence 0.975 the legend says 97.5% (not a rounded 98%) and a star needs Holm p < 0.025."""
    results = load_results(inputs["metrics"], inputs["per_user"], inputs["curves"], METRICS, VARIANTS,
                           EXPECTED)
    strict = replace(EVAL, confidence=0.975)
    table, families = build_table(results, METRICS, strict, REPORT["labels"], _comparisons())
    text = table_markdown(table, METRICS, strict, REPORT["labels"], "ml-latest-small", families)
    assert "Intervals: 97.5% t intervals" in text and "* marks Holm p < 0.025" in text
    rows = [line.removeprefix("| ").removesuffix(" |").split(" | ") for line in text.splitlines()
            if line.startswith("| ")]
    column = next(i for i, title in enumerate(rows[0]) if title.startswith("Δ NDCG@100 vs"))
    starred = [row[column].endswith(" *") for row in rows[1:]]
    holm = table["p_holm_vs_original"].tolist()
    assert len(starred) == len(holm) and any(starred)
    assert starred == [bool(p < 0.025) for p in holm]
