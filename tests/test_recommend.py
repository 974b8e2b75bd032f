"""`multvae recommend` on a tiny split and a two-epoch model: what it returns and how it refuses."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dump_params
from typer.testing import CliRunner

from multvae.config import SYNTHETIC_PRESETS
from multvae.data import load_dataset
from multvae.model import make_scorer
from multvae.model_file import ModelFileError, SavedModel, load_model, save_model
from multvae.params import defaults, load_params
from multvae.recommend import Recommender, RecommendError
from multvae.split import split, write_split
from multvae.synthetic import generate
from multvae.training import train_model
from stages.cli import app

BASE, RUNTIME = defaults()

TINY = replace(BASE,
    data=replace(BASE.data, dataset="synthetic", heldout_users=30),
    model=replace(BASE.model, hidden_dims=(16,), latent_dim=8),
    train=replace(BASE.train, epochs=2, batch_size=50),
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A prepared split, and the model of variant `original` for seeds 0 and 7."""
    root = tmp_path_factory.mktemp("recommend")
    ratings, movies = generate(SYNTHETIC_PRESETS["tiny"])
    write_split(split(ratings, TINY.data, movies), root / "prepared", root / "stats.json")
    dataset = load_dataset(root / "prepared" / "fold-0")
    result = train_model(TINY, dataset, seed=0, log=lambda _: None)
    assert result.state_dict is not None
    for seed in (0, 7):
        save_model(root / "models" / "original" / "fold-0" / f"seed-{seed}.pt", result.state_dict, SavedModel(
            config=TINY, seed=seed, movie_ids=dataset.movie_ids, data_fingerprint=dataset.fingerprint,
            best_epoch=result.best_epoch, best_validation=result.best_validation))
    variants = {"original": {}, "relu": {"model": {"activation": "relu"}}}
    (root / "params.yaml").write_text(dump_params({"variants": variants}))
    return root


@pytest.fixture(scope="module")
def rec(root) -> Recommender:
    return Recommender("original", root / "models", root / "prepared", known=_known(root / "params.yaml"))


def edited_split(root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the prepared split whose item table went through `edit`."""
    data = tmp_path / "prepared"
    shutil.copytree(root / "prepared", data)
    items = pd.read_parquet(data / "fold-0" / "items.parquet")
    edit(items).to_parquet(data / "fold-0" / "items.parquet", index=False)
    return data


def title_of(root: Path, movie_id: int) -> str:
    items = pd.read_parquet(root / "prepared" / "fold-0" / "items.parquet")
    return items.loc[items["movieId"] == movie_id, "title"].item()


def test_a_held_out_user_gets_the_best_scored_movies_outside_their_fold_in(root, rec):
    data = load_dataset(root / "prepared" / "fold-0")
    path = root / "models" / "original" / "fold-0" / "seed-0.pt"
    model, _ = load_model(path, "cpu", data.fingerprint, "retrain")
    score = make_scorer(model, torch.device("cpu"))
    user_ids = data.users.set_index("user")["userId"]
    movie_ids = data.items["movieId"].to_numpy()
    for heldout in (data.validation, data.test):
        for row, user in enumerate(heldout.users):
            foldin = heldout.foldin[row]
            answer = rec.for_user(int(user_ids[user]), n=20)
            with torch.no_grad():
                expected = score(foldin)[0].numpy()
            expected[foldin.indices] = -np.inf
            top = answer.top
            assert top["rank"].tolist() == list(range(1, 21))
            assert set(top["movieId"]).isdisjoint(movie_ids[foldin.indices])
            assert sorted(answer.given["movieId"]) == sorted(movie_ids[foldin.indices])
            assert top["score"].is_monotonic_decreasing
            np.testing.assert_allclose(top["score"], np.sort(expected)[::-1][:20], rtol=1e-5)
            assert (top["title"].str.len() > 0).all()
            assert answer.role in ("validation", "test")


def test_a_training_user_is_folded_in_from_their_training_items(root, rec):
    users = pd.read_parquet(root / "prepared" / "fold-0" / "users.parquet")
    user = users.loc[users["role"] == "train"].iloc[0]
    train = pd.read_parquet(root / "prepared" / "fold-0" / "train.parquet")
    items = pd.read_parquet(root / "prepared" / "fold-0" / "items.parquet").set_index("item")
    known = set(items.loc[train.loc[train["user"] == user["user"], "item"], "movieId"])
    answer = rec.for_user(int(user["userId"]), n=5)
    assert answer.role == "train" and set(answer.given["movieId"]) == known
    assert len(answer.top) == 5 and set(answer.top["movieId"]).isdisjoint(known)


def test_movies_by_id_and_title_are_folded_in_and_never_returned(root, rec):
    title = title_of(root, 17)
    answer = rec.for_items([1, "2", title.upper(), "movie 33 (", 1], n=200)
    assert sorted(answer.given["movieId"]) == [1, 2, 17, 33]
    assert len(answer.top) == 200 - 4  # n beyond what is left: every other item
    assert set(answer.top["movieId"]).isdisjoint({1, 2, 17, 33})
    assert answer.top["score"].is_monotonic_decreasing
    assert answer.user is None and answer.ignored == []


def test_an_exact_title_wins_over_a_longer_one_containing_it(root, tmp_path):
    first = title_of(root, 1)
    data = edited_split(root, tmp_path, lambda items: items.assign(
        title=items["title"].where(items["movieId"] != 3, first + " Returns")))
    rec = Recommender("original", root / "models", data, known=_known(root / "params.yaml"))
    assert rec.for_items([first.lower()]).given["movieId"].tolist() == [1]
    assert rec.for_items(["returns"]).given["movieId"].tolist() == [3]


def test_movies_outside_the_item_index_are_ignored_unless_all_are(rec):
    answer = rec.for_items([5, 9999], n=3)
    assert answer.ignored == [9999] and answer.given["movieId"].tolist() == [5]
    with pytest.raises(RecommendError, match=r"movieId 9999, 8888 are not among its 200 items"):
        rec.for_items([9999, 8888])


@pytest.mark.parametrize(("query", "message"), [
    ("no such film", r"no movie title matches 'no such film'"),
    ("movie 1", r"'movie 1' matches 111 titles by substring: Synthetic movie 1 \(taste 0\) \[movieId 1\];"
                r".*and 106 more; give the full title or the movieId"),
])
def test_an_unknown_or_ambiguous_title_is_refused(rec, query, message):
    with pytest.raises(RecommendError, match=message):
        rec.for_items([query])


def test_two_movies_with_the_same_title_are_ambiguous(root, tmp_path):
    twin = title_of(root, 5)
    data = edited_split(root, tmp_path, lambda items: items.assign(
        title=items["title"].where(items["movieId"] != 2, twin)))
    rec = Recommender("original", root / "models", data, known=_known(root / "params.yaml"))
    with pytest.raises(RecommendError, match=r"matches 2 titles exactly: .*\[movieId 2\]; .*\[movieId 5\]"):
        rec.for_items([twin])


def test_unknown_users_are_refused(root, rec):
    users = pd.read_parquet(root / "prepared" / "fold-0" / "users.parquet")
    missing = int(users["userId"].max()) + 1
    with pytest.raises(RecommendError, match=rf"user {missing} is not in .*users.parquet"):
        rec.for_user(missing)


def _known(params: Path) -> list[str]:
    return list(load_params(params).variants)


def test_variants_and_seeds_without_a_model_are_refused(root):
    models, data, params = root / "models", root / "prepared", root / "params.yaml"
    with pytest.raises(RecommendError, match=r"unknown variant 'nope'.*known: original, relu"):
        Recommender("nope", models, data, known=_known(params))
    with pytest.raises(RecommendError, match=r"'relu' has no trained model \(.*relu/fold-\*/seed-\*\.pt "
                                             r"not found\); run `dvc repro --glob 'train@relu-\*'` first"):
        Recommender("relu", models, data, known=_known(params))
    with pytest.raises(RecommendError, match=r"fold-\*/seed-3\.pt not found; trained runs of 'original' "
                                             r"\(fold, seed\): \(0, 0\), \(0, 7\)"):
        Recommender("original", models, data, seed=3, known=_known(params))
    assert Recommender("original", models, data, known=_known(params)).seed == 0
    assert Recommender("original", models, data, seed=7, known=_known(params)).seed == 7


def test_a_model_of_another_split_with_as_many_items_is_refused(root, tmp_path):
    ratings, movies = generate(SYNTHETIC_PRESETS["tiny"])
    other = dataclasses.replace(TINY.data, seed=TINY.data.seed + 1)
    write_split(split(ratings, other, movies), tmp_path / "prepared", tmp_path / "stats.json")
    assert len(pd.read_parquet(tmp_path / "prepared" / "fold-0" / "items.parquet")) == len(
        pd.read_parquet(root / "prepared" / "fold-0" / "items.parquet"))
    with pytest.raises(ModelFileError, match=r"seed-0\.pt was trained on another prepared split .*"
                                             r"run `dvc repro --glob 'train@original-\*'`"):
        Recommender("original", root / "models", tmp_path / "prepared", known=_known(root / "params.yaml"))


def test_an_item_table_edited_behind_the_manifest_is_refused(root, tmp_path):
    data = edited_split(root, tmp_path, lambda items: items.assign(movieId=items["movieId"][::-1].to_numpy()))
    with pytest.raises(RecommendError, match=r"its item map differs from .*items.parquet"):
        Recommender("original", root / "models", data, known=_known(root / "params.yaml"))


@pytest.fixture
def cli(root):
    """Run `multvae recommend` with the tiny split's folders."""
    folders = ["--models", str(root / "models"), "--data", str(root / "prepared"),
               "--params", str(root / "params.yaml")]
    return lambda *args: CliRunner().invoke(app, ["recommend", *args, *folders])


def test_cli_prints_a_ranked_table(root, cli):
    result = cli("--user", str(_test_user(root)), "-n", "3")
    assert result.exit_code == 0, result.output
    header, columns, *rows = result.output.splitlines()
    assert header.startswith(f"original (seed 0) for test user {_test_user(root)}, from ")
    assert columns.split() == ["rank", "movieId", "title", "score"]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"] and all("Synthetic movie" in r for r in rows)


def test_cli_json_lists_the_input_and_the_recommendations(cli):
    result = cli("--movie", "1", "--movie", "movie 33 (", "--movie", "9999", "--json", "-n", "4")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["variant"] == "original" and answer["seed"] == 0 and answer["ignored"] == [9999]
    assert [m["movieId"] for m in answer["given"]] == [1, 33]
    assert [r["rank"] for r in answer["recommendations"]] == [1, 2, 3, 4]
    assert {"movieId", "title", "score"} <= set(answer["recommendations"][0])
    assert "movieId 9999 is not among the model's items; ignored" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["relu", "--movie", "1"], "run `dvc repro --glob 'train@relu-*'` first"),
    (["--movie", "no such film"], "no movie title matches 'no such film'"),
    (["--user", "999999"], "user 999999 is not in"),
    ([], "give either --user or --movie"),
])
def test_cli_errors_are_one_line(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def _test_user(root: Path) -> int:
    users = pd.read_parquet(root / "prepared" / "fold-0" / "users.parquet")
    return int(users.loc[users["role"] == "test", "userId"].iloc[0])


def test_identical_models_are_written_as_identical_bytes(root, tmp_path):
    """DVC hashes model files: a temporary's name stored inside would make identical runs differ."""
    dataset = load_dataset(root / "prepared" / "fold-0")
    model, saved = load_model(root / "models" / "original" / "fold-0" / "seed-0.pt", "cpu", None, "x")
    paths = [tmp_path / "a" / "seed-0.pt", tmp_path / "b" / "other-name.pt"]
    for path in paths:
        save_model(path, model.state_dict(), dataclasses.replace(saved, movie_ids=dataset.movie_ids))
    assert paths[0].read_bytes() == paths[1].read_bytes()
