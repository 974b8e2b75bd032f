"""Baselines: EASE against a direct dense computation, most-popular's ranking, lambda selection,
and the two stage commands' outputs on a tiny synthetic split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import typer
import yaml
from typer.testing import CliRunner

from multvae import baselines
from multvae.baselines import (
    ease_weights,
    fit_ease,
    gram_matrix,
    item_counts,
    linear_scorer,
    popularity_scorer,
)
from multvae.config import SYNTHETIC_PRESETS, DataConfig
from multvae.data import Dataset, load_dataset
from multvae.layout import fold_dir
from multvae.metrics import score_heldout, top_k
from multvae.split import split, write_split
from multvae.synthetic import generate
from stages.baselines import ease, popularity

KS = (20, 50, 100)
# Best validation lambda on the tiny split is 100: neither first, last, smallest nor largest.
LAMBDAS = (3000.0, 1.0, 100.0, 10.0)


def random_binary(rows: int, cols: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((rows, cols)) < density).astype(np.float32))


def dense_ease(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck's four lines, verbatim in spirit."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = p / (-np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split")
    ratings, movies = generate(SYNTHETIC_PRESETS["tiny"])
    result = split(ratings, DataConfig(dataset="synthetic", heldout_users=60), movies)
    write_split(result, root / "prepared", root / "stats.json")
    return root / "prepared"


@pytest.fixture(scope="module")
def dataset(prepared: Path) -> Dataset:
    return load_dataset(fold_dir(prepared, 0))


def test_gram_matrix_blocks_match_the_sparse_product() -> None:
    x = random_binary(90, 37, 0.2, seed=1)
    expected = (x.T @ x).toarray()
    np.testing.assert_array_equal(gram_matrix(x, np.float64, block=5), expected)
    np.testing.assert_array_equal(gram_matrix(x, np.float32), expected)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_ease_matches_dense_inverse(dtype: type[np.floating], rtol: float,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "MIRROR_BLOCK", 7)  # several blocks, the last one ragged
    x = random_binary(120, 45, 0.15, seed=2)
    lam = 7.5
    expected = dense_ease(x.toarray().astype(np.float64), lam)
    got = ease_weights(gram_matrix(x, dtype), lam)
    assert got.dtype == dtype
    assert not np.allclose(expected, expected.T)  # B is not symmetric: the column scaling matters
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    np.testing.assert_array_equal(np.diag(got), 0.0)


def test_ease_weights_leave_the_gram_matrix_intact() -> None:
    x = random_binary(60, 30, 0.2, seed=3)
    gram = gram_matrix(x)
    before = gram.copy()
    ease_weights(gram, 3.0)
    np.testing.assert_array_equal(gram, before)


def test_linear_scorer_is_foldin_times_weights() -> None:
    x = random_binary(50, 20, 0.3, seed=4)
    weights = dense_ease(x.toarray().astype(np.float64), 2.0)
    foldin = random_binary(6, 20, 0.3, seed=5)
    scores = linear_scorer(weights)(foldin)
    assert scores.dtype.is_floating_point and tuple(scores.shape) == (6, 20)
    np.testing.assert_allclose(scores.numpy(), foldin.toarray() @ weights, rtol=1e-5, atol=1e-6)


def test_most_popular_ranks_by_training_counts_without_foldin_items() -> None:
    # Item j is liked by j training users, so the popularity order is n-1, n-2, ..., 0.
    n_items = 12
    rows = [u for j in range(n_items) for u in range(j)]
    cols = [j for j in range(n_items) for _ in range(j)]
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_items, n_items))
    np.testing.assert_array_equal(item_counts(train), np.arange(n_items))
    foldin = sp.csr_matrix(np.array([[0] * 11 + [1], [0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]], np.float32))
    scores = popularity_scorer(train)(foldin)
    top = top_k(scores, foldin, 5).numpy()
    np.testing.assert_array_equal(top[0], [10, 9, 8, 7, 6])
    np.testing.assert_array_equal(top[1], [11, 10, 7, 6, 5])


def test_most_popular_never_recommends_foldin_items(dataset: Dataset) -> None:
    foldin = dataset.test.foldin
    top = top_k(popularity_scorer(dataset.train)(foldin), foldin, 100).numpy()
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    assert not np.asarray(foldin[rows, top.ravel()]).any()


def test_lambda_selection_picks_best_validation_ndcg(dataset: Dataset) -> None:
    gram = gram_matrix(dataset.train)
    brute = {lam: score_heldout(linear_scorer(ease_weights(gram, lam)), dataset.validation, KS)
             ["ndcg@100"].mean() for lam in LAMBDAS}
    best = max(brute, key=brute.__getitem__)
    # The case can tell a wrong rule apart: the best is not first, last, smallest or largest.
    assert best not in (LAMBDAS[0], LAMBDAS[-1], min(LAMBDAS), max(LAMBDAS))
    assert len(set(brute.values())) == len(LAMBDAS)
    fit = fit_ease(dataset.train, dataset.validation, LAMBDAS, KS)
    assert fit.lam == best
    assert list(fit.validation) == list(LAMBDAS)
    np.testing.assert_allclose([fit.validation[lam] for lam in LAMBDAS], [brute[lam] for lam in LAMBDAS])
    np.testing.assert_allclose(fit.weights, ease_weights(gram, best))


def test_ease_beats_most_popular_on_planted_tastes(dataset: Dataset) -> None:
    fit = fit_ease(dataset.train, dataset.validation, LAMBDAS, KS)
    ease_ndcg = score_heldout(linear_scorer(fit.weights), dataset.test, KS)["ndcg@100"].mean()
    pop_ndcg = score_heldout(popularity_scorer(dataset.train), dataset.test, KS)["ndcg@100"].mean()
    assert ease_ndcg > pop_ndcg + 0.15


def write_params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"eval": {"ks": list(KS)}, "baselines": {"ease_lambdas": list(LAMBDAS)}}))
    return path


def check_outputs(out: Path, name: str, n_test: int) -> dict:
    summary = json.loads((out / "variants" / f"{name}.json").read_text())
    assert summary["variant"] == name and summary["kind"] == "baseline"
    assert summary["test_users"] == n_test
    per_user = pd.read_parquet(out / "per_user" / f"{name}.parquet")
    assert set(per_user.columns) == {"userId", "fold", "seed", "ndcg@100", "recall@20", "recall@50"}
    assert len(per_user) == n_test and (per_user["seed"] == 0).all()
    for metric in ("ndcg@100", "recall@20", "recall@50"):
        assert summary[metric] == pytest.approx(per_user[metric].mean())
        assert 0 < summary[metric] <= 1
    assert 0 < summary["val_ndcg@100"] <= 1
    assert not list(out.rglob("*.tmp"))
    return summary


def test_stage_commands_write_documented_outputs(tmp_path: Path, prepared: Path, dataset: Dataset) -> None:
    params, out = write_params(tmp_path), tmp_path / "metrics"
    n_test = dataset.test.users.size
    popularity(params=params, data=prepared, metrics=out / "variants" / "most_popular.json",
               per_user=out / "per_user" / "most_popular.parquet")
    pop = check_outputs(out, "most_popular", n_test)
    assert set(pop) == {"variant", "kind", "ndcg@100", "recall@20", "recall@50", "val_ndcg@100", "test_users",
                        "folds"}

    ease(params=params, data=prepared, metrics=out / "variants" / "ease.json",
         per_user=out / "per_user" / "ease.parquet")
    summary = check_outputs(out, "ease", n_test)
    assert set(summary) == set(pop) | {"lambda", "lambda_grid"}
    assert list(summary["lambda_grid"]) == [f"{lam:g}" for lam in LAMBDAS]
    assert summary["val_ndcg@100"] == max(summary["lambda_grid"].values())
    assert summary["lambda_grid"][f"{summary['lambda']:g}"] == summary["val_ndcg@100"]
    assert summary["ndcg@100"] > pop["ndcg@100"]


def test_stage_commands_parse_options_and_report_missing_data(tmp_path: Path, prepared: Path) -> None:
    app = typer.Typer()
    app.command()(popularity)
    app.command()(ease)
    params = write_params(tmp_path)
    runner = CliRunner()
    outputs = ["--metrics", str(tmp_path / "p.json"), "--per-user", str(tmp_path / "p.parquet")]
    result = runner.invoke(app, ["popularity", "-p", str(params), "--data", str(prepared), *outputs])
    assert result.exit_code == 0, result.output
    assert "popularity: ndcg@100" in result.output
    assert json.loads((tmp_path / "p.json").read_text())["variant"] == "most_popular"

    outputs = ["--metrics", str(tmp_path / "e.json"), "--per-user", str(tmp_path / "e.parquet")]
    result = runner.invoke(app, ["ease", "-p", str(params), "--data", str(tmp_path / "missing"), *outputs])
    assert result.exit_code == 1
    assert "prepare" in result.output and not (tmp_path / "e.json").exists()
