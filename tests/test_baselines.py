"""Baselines: EASE and RP3β against direct dense computations, most-popular's ranking, the λ search
(grid, edge extension, refinement), and the stage commands' outputs on a tiny synthetic split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import typer
from conftest import dump_params
from typer.testing import CliRunner

from multvae.baselines import (
    EaseSpectrum,
    Rp3Walk,
    ease_weights,
    fit_ease,
    fit_rp3beta,
    gram_matrix,
    item_counts,
    linear_scorer,
    popularity_scorer,
    search_grid,
)
from multvae.config import SYNTHETIC_PRESETS
from multvae.data import DataError, Dataset, HeldOut, load_dataset
from multvae.folds import load_folds
from multvae.layout import fold_dir
from multvae.metrics import CutoffError, score_heldout, top_k
from multvae.params import defaults
from multvae.split import split, write_split
from multvae.synthetic import generate
from stages.baselines import ease, popularity, rp3beta

BASE, RUNTIME = defaults()

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
    result = split(ratings, replace(BASE.data, dataset="synthetic", heldout_users=60), movies)
    write_split(result, root / "prepared", root / "stats.json")
    return root / "prepared"


@pytest.fixture(scope="module")
def dataset(prepared: Path) -> Dataset:
    return load_dataset(fold_dir(prepared, 0))


def test_the_scoring_stages_load_each_fold_checked(prepared: Path, dataset: Dataset,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_folds(prepared, (0,), (1, dataset.n_items))
    assert list(loaded) == [0] and loaded[0].fingerprint == dataset.fingerprint
    with pytest.raises(CutoffError, match=f"cut-off {dataset.n_items + 1} .*fold-0"):
        load_folds(prepared, (0,), (dataset.n_items + 1,))
    for role in ("validation", "test"):
        empty = HeldOut(np.zeros(0, dtype=np.int64), *(sp.csr_matrix((0, dataset.n_items)),) * 2)
        emptied = replace(dataset, validation=empty) if role == "validation" else replace(dataset, test=empty)
        monkeypatch.setattr("multvae.folds.load_dataset", lambda where, d=emptied: d)
        with pytest.raises(DataError, match=f"fold-0: the {role} split has no users"):
            load_folds(prepared, (0,), (1,))


def test_gram_matrix_blocks_match_the_sparse_product() -> None:
    x = random_binary(90, 37, 0.2, seed=1)
    expected = (x.T @ x).toarray()
    np.testing.assert_array_equal(gram_matrix(x, np.float64, block=5), expected)
    np.testing.assert_array_equal(gram_matrix(x, np.float32), expected)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_ease_from_the_spectrum_matches_the_dense_inverse(dtype: type[np.floating], rtol: float) -> None:
    x = random_binary(120, 45, 0.15, seed=2)
    spectrum = EaseSpectrum(x, dtype)
    for lam in (0.5, 7.5, 300.0):
        expected = dense_ease(x.toarray().astype(np.float64), lam)
        got = spectrum.weights(lam)
        assert got.dtype == dtype
        assert not np.allclose(expected, expected.T)  # B is not symmetric: the column scaling matters
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        np.testing.assert_array_equal(np.diag(got), 0.0)
        # Scoring without forming B gives X B.
        foldin = random_binary(9, 45, 0.2, seed=3)
        np.testing.assert_allclose(spectrum.scorer(lam)(foldin).numpy(), foldin.toarray() @ expected,
                                   rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_ease_at_one_lambda_by_cholesky_matches_dense_inverse(dtype: type[np.floating], rtol: float) -> None:
    x = random_binary(120, 45, 0.15, seed=2)
    for lam in (0.5, 7.5, 300.0):
        expected = dense_ease(x.toarray().astype(np.float64), lam)
        got = ease_weights(x, lam, dtype)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        np.testing.assert_array_equal(np.diag(got), 0.0)


def test_rp3beta_matches_the_random_walk_written_out() -> None:
    x = random_binary(80, 30, 0.15, seed=6).toarray().astype(np.float64)
    x[:, 0] = 0.0  # an item no training user has: reached by no walk, scored 0
    alpha, beta = 0.8, 0.3
    users, items = x.sum(axis=1), x.sum(axis=0)
    user_to_item = np.divide(x, users[:, None], out=np.zeros_like(x), where=users[:, None] > 0) ** alpha
    item_to_user = np.divide(x.T, items[:, None], out=np.zeros_like(x.T), where=items[:, None] > 0) ** alpha
    popularity = np.divide(1.0, items**beta, out=np.zeros_like(items), where=items > 0)
    walk = item_to_user @ user_to_item * popularity[None, :]
    foldin = random_binary(7, 30, 0.2, seed=7)
    got = Rp3Walk(sp.csr_matrix(x), alpha).scorer(beta)(foldin).numpy()
    np.testing.assert_allclose(got, foldin.toarray() @ walk, rtol=1e-5, atol=1e-7)
    assert np.all(got[:, 0] == 0)


def test_grid_search_extends_past_a_winning_edge_and_refines_the_peak() -> None:
    calls = []

    def peak_at(centre: float):
        def score(v: float) -> float:
            calls.append(v)
            return -(np.log10(v) - centre) ** 2
        return score

    best, scores, at_edge = search_grid(peak_at(2.3), [10, 100, 1000], refine=2)
    assert not at_edge and len(calls) == len(scores) == 3 + 2 + 2
    assert abs(np.log10(best) - 2.3) < 0.25 and best == max(scores, key=scores.__getitem__)
    calls.clear()
    best, scores, at_edge = search_grid(peak_at(4.6), [10, 100, 1000], refine=0)
    assert best == pytest.approx(1e5) and not at_edge  # extended twice: 1e4, 1e5, then 1e6 loses
    assert sorted(scores) == pytest.approx([10, 100, 1000, 1e4, 1e5, 1e6])
    best, scores, at_edge = search_grid(peak_at(-9), [10, 100], refine=0, edge_steps=2)
    assert at_edge and best == pytest.approx(0.1)  # still at the lower edge when the steps run out


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
    spectrum = EaseSpectrum(dataset.train)
    brute = {lam: score_heldout(linear_scorer(spectrum.weights(lam)), dataset.validation, KS)
             ["ndcg@100"].mean() for lam in LAMBDAS}
    best = max(brute, key=brute.__getitem__)
    # The case can tell a wrong rule apart: the best is not first, last, smallest or largest.
    assert best not in (LAMBDAS[0], LAMBDAS[-1], min(LAMBDAS), max(LAMBDAS))
    assert len(set(brute.values())) == len(LAMBDAS)
    fit = fit_ease(dataset.train, dataset.validation, LAMBDAS, 0, KS)
    assert fit.lam == best and not fit.at_edge
    assert sorted(fit.validation) == sorted(LAMBDAS)
    np.testing.assert_allclose([fit.validation[lam] for lam in LAMBDAS], [brute[lam] for lam in LAMBDAS])
    np.testing.assert_allclose(fit.weights, spectrum.weights(best))
    refined = fit_ease(dataset.train, dataset.validation, LAMBDAS, 2, KS)
    assert (len(refined.validation) == len(LAMBDAS) + 4
            and refined.validation[refined.lam] >= fit.validation[best])


def test_rp3beta_selection_picks_best_validation_ndcg(dataset: Dataset) -> None:
    alphas, betas = (0.5, 1.0), (0.0, 0.3)
    fit = fit_rp3beta(dataset.train, dataset.validation, alphas, betas, KS, edge_steps=0)
    brute = {
        (a, b): score_heldout(Rp3Walk(dataset.train, a).scorer(b), dataset.validation, KS)["ndcg@100"].mean()
        for a in alphas for b in betas}
    assert (fit.alpha, fit.beta) == max(brute, key=brute.__getitem__)
    np.testing.assert_allclose([fit.validation[k] for k in brute], list(brute.values()))


def test_ease_beats_most_popular_on_planted_tastes(dataset: Dataset) -> None:
    fit = fit_ease(dataset.train, dataset.validation, LAMBDAS, 0, KS)
    ease_ndcg = score_heldout(linear_scorer(fit.weights), dataset.test, KS)["ndcg@100"].mean()
    pop_ndcg = score_heldout(popularity_scorer(dataset.train), dataset.test, KS)["ndcg@100"].mean()
    assert ease_ndcg > pop_ndcg + 0.15


def write_params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(dump_params({"eval": {"ks": list(KS)}, "baselines": {
        "ease_lambdas": list(LAMBDAS), "ease_refine": 1, "rp3_alphas": [0.5, 1.0], "rp3_betas": [0.0, 0.3]}}))
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
    assert set(pop) == {"variant", "kind", "split", "per_user_sha256", "content_sha256", "ndcg@100",
                        "recall@20", "recall@50", "val_ndcg@100", "test_users", "folds", "validation_by_fold",
                        "tuning_budget"}

    ease(params=params, data=prepared, metrics=out / "variants" / "ease.json",
         per_user=out / "per_user" / "ease.parquet", choice=out / "ease" / "lambda.json")
    summary = check_outputs(out, "ease", n_test)
    handed = json.loads((out / "ease" / "lambda.json").read_text())  # for the blend: λ by fold, its split
    assert handed["lambdas"] == {"0": summary["lambda"]} and set(handed["split"]) == {"0"}
    assert set(summary) == set(pop) | {"lambda", "grid", "at_edge"}
    assert {f"{lam:.6g}" for lam in LAMBDAS} < set(summary["grid"])  # the grid, refined once
    assert summary["tuning_budget"] == len(summary["grid"]) == len(LAMBDAS) + 2
    assert summary["val_ndcg@100"] == max(summary["grid"].values())
    assert summary["grid"][f"{summary['lambda']:.6g}"] == summary["val_ndcg@100"]
    assert summary["ndcg@100"] > pop["ndcg@100"] and summary["at_edge"] is False

    rp3beta(params=params, data=prepared, metrics=out / "variants" / "rp3beta.json",
            per_user=out / "per_user" / "rp3beta.parquet", choice=out / "rp3beta" / "choice.json")
    walk = check_outputs(out, "rp3beta", n_test)
    assert set(walk) == set(pop) | {"alpha", "beta", "grid", "at_edge"}
    assert walk["tuning_budget"] == len(walk["grid"]) >= 4  # the 2 x 2 grid, extended past a winning end
    assert walk["val_ndcg@100"] == max(walk["grid"].values())
    assert walk["ndcg@100"] > pop["ndcg@100"]


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

    outputs = ["--metrics", str(tmp_path / "e.json"), "--per-user", str(tmp_path / "e.parquet"), "--choice",
               str(tmp_path / "lambda.json")]
    result = runner.invoke(app, ["ease", "-p", str(params), "--data", str(tmp_path / "missing"), *outputs])
    assert result.exit_code == 1
    assert "prepare" in result.output and not (tmp_path / "e.json").exists()


def test_rp3beta_extends_its_grid_past_a_winning_end(dataset: Dataset) -> None:
    """β 0 and 0.05 on the tiny split: the choice sits at 0.05, the upper end, so the grid grows one
    step there (0.1), which loses: the choice is inside, and no longer flagged."""
    fit = fit_rp3beta(dataset.train, dataset.validation, (1.0,), (0.0, 0.05), KS)
    assert sorted(fit.validation) == [(1.0, 0.0), (1.0, 0.05), (1.0, 0.1)]
    assert (fit.alpha, fit.beta) == (1.0, 0.05) and not fit.at_edge
    assert fit.validation[(1.0, 0.05)] == max(fit.validation.values())
    unextended = fit_rp3beta(dataset.train, dataset.validation, (1.0,), (0.0, 0.05), KS, edge_steps=0)
    assert unextended.at_edge and len(unextended.validation) == 2
