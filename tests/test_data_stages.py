"""The `multvae download` and `multvae prepare` commands end to end, on the real ml-latest-small
release and on tiny synthetic data: outputs, counts, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import dump_params
from typer.testing import CliRunner, Result

from multvae.config import ConfigError
from multvae.data import load_dataset
from multvae.params import load_config
from stages.cli import app


def invoke(*args) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def run_stages(params: Path, root: Path) -> dict:
    """download then prepare into root/data, as `dvc repro prepare` would; returns the stats, fold 0's
    counts merged into the shared ones."""
    data = root / "data"
    result = invoke("download", "-p", params, "--out", data / "raw", "--no-progress")
    assert result.exit_code == 0, result.output
    result = invoke("prepare", "-p", params, "--raw", data / "raw", "--out", data / "prepared",
                    "--stats", data / "stats.json")
    assert result.exit_code == 0, result.output
    stats = json.loads((data / "stats.json").read_text())
    assert list(stats["folds"]) == ["0"]
    return {**stats, **stats["folds"]["0"]}


def test_ml_latest_small_counts_match_an_independent_computation(tmp_path, params_file,
                                                                 ml_latest_small_ratings):
    params = params_file(dataset="ml-latest-small", source=str(ml_latest_small_ratings),
                         split="heldout_users", heldout_users=60)
    stats = run_stages(params, tmp_path)
    prepared = tmp_path / "data" / "prepared" / "fold-0"

    # Independently, with plain pandas: positives are ratings >= 4, of users with >= 5 of them.
    ratings = pd.read_csv(ml_latest_small_ratings)
    pos = ratings[ratings["rating"] >= 4.0]
    per_user = pos.groupby("userId").size()
    pos = pos[pos["userId"].isin(per_user.index[per_user >= 5])]
    assert (len(pos), pos["userId"].nunique()) == (48_562, 603)  # the dataset notes' figures
    assert (stats["ratings"], stats["positives"], stats["users_kept"]) == (len(ratings), 48_562, 603)

    users = pd.read_parquet(prepared / "users.parquet")
    heldout = {role: set(users.loc[users["role"] == role, "userId"]) for role in ("validation", "test")}
    assert len(heldout["validation"]) == len(heldout["test"]) == 60
    assert not heldout["validation"] & heldout["test"]
    assert heldout["validation"] | heldout["test"] <= set(pos["userId"])
    train_pos = pos[~pos["userId"].isin(heldout["validation"] | heldout["test"])]
    items = np.sort(train_pos["movieId"].unique())
    assert stats["train_users"] == train_pos["userId"].nunique() == 603 - 120
    assert stats["items"] == len(items)
    assert pd.read_parquet(prepared / "items.parquet")["movieId"].tolist() == items.tolist()
    assert stats["train_positives"] == len(train_pos)
    for role, ids in heldout.items():
        own = pos[pos["userId"].isin(ids) & pos["movieId"].isin(items)]
        n = own.groupby("userId").size()
        assert len(n) == 60 and (n >= 2).all()
        n_target = int(np.maximum(1, np.floor(0.2 * n)).sum())
        assert stats[f"{role}_target_positives"] == n_target
        assert stats[f"{role}_foldin_positives"] == len(own) - n_target
        target = pd.read_parquet(prepared / f"{role}_target.parquet")
        assert stats[f"{role}_users"] == target["user"].nunique() == 60  # every one has a target

    # Titles come from the movies.csv beside the ratings file.
    titles = pd.read_parquet(prepared / "items.parquet").set_index("movieId")["title"]
    assert titles[1] == "Toy Story (1995)" and (titles != "").all()
    # What training and evaluation load agrees with the counts.
    dataset = load_dataset(prepared)
    assert dataset.train.shape == (483, stats["items"]) and dataset.train.nnz == stats["train_positives"]
    assert dataset.validation.foldin.shape == dataset.validation.target.shape == (60, stats["items"])
    assert dataset.test.target.nnz == stats["test_target_positives"]


@pytest.mark.parametrize("name", ["ratings.dat", "ratings.dat.gz", "no-timestamps.csv"])
def test_local_ratings_file_through_both_stages(write_dat, tiny, tmp_path, params_file, name):
    ratings = tiny[0]
    source = tmp_path / name
    if ".dat" in name:
        write_dat(ratings, source)
    else:
        ratings = ratings.drop(columns="timestamp")
        ratings.to_csv(source, index=False)
    stats = run_stages(params_file(source=str(source), heldout_users=20), tmp_path)
    pos = ratings[ratings["rating"] >= 4.0]
    per_user = pos.groupby("userId").size()
    assert stats["positives"] == int(per_user[per_user >= 5].sum())
    assert stats["validation_users"] == stats["test_users"] == 20


def test_titles_of_a_local_archive_land_in_items(make_zip, tiny, tmp_path, params_file):
    ratings, movies = tiny
    archive = make_zip(tmp_path / "copy.zip", {"something/ratings.csv": ratings.to_csv(index=False),
                                               "something/movies.csv": movies.to_csv(index=False)})
    stats = run_stages(params_file(source=str(archive), heldout_users=20), tmp_path)
    items = pd.read_parquet(tmp_path / "data" / "prepared" / "fold-0" / "items.parquet")
    assert len(items) == stats["items"] > 0
    expected = movies.set_index("movieId")["title"]
    assert items["title"].tolist() == expected[items["movieId"]].tolist()


def raw_folder(root: Path, ratings: pd.DataFrame, movies: pd.DataFrame) -> Path:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    ratings.to_parquet(raw / "ratings.parquet", index=False)
    movies.to_parquet(raw / "movies.parquet", index=False)
    return raw


def bad_download(kind, tmp_path, params_file, tiny):
    if kind == "unknown-dataset":
        return params_file(dataset="ml-5m"), "data.dataset: 'ml-5m' is not one of 'ml-20m', 'ml-100k'"
    if kind == "non-numeric-rating":
        source = tmp_path / "ratings.csv"
        source.write_text("userId,movieId,rating\n1,2,4.0\n1,3,five\n")
        return params_file(source=str(source)), "ratings.csv: column rating must be numeric"
    source = tmp_path / "copy.zip"
    source.write_bytes(b"not a zip" * 100)
    return params_file(source=str(source)), "copy.zip: corrupt or truncated archive"


def bad_prepare(kind, tmp_path, params_file, tiny):
    ratings, movies = tiny
    if kind == "no-raw-data":
        return params_file(), "ratings.parquet not found: run the download stage first"
    if kind == "too-many-heldout-users":
        raw_folder(tmp_path, ratings, movies)
        return params_file(heldout_users=150), "data.heldout_users=150 asks for 150 validation and 150 test"
    if kind == "no-titles":
        (raw_folder(tmp_path, ratings, movies) / "movies.parquet").unlink()
        return params_file(heldout_users=20), "movies.parquet not found: run the download stage first"
    if kind == "corrupt-parquet":
        (raw_folder(tmp_path, ratings, movies) / "ratings.parquet").write_bytes(b"PAR1 cut off")
        return params_file(heldout_users=20), "ratings.parquet: not a readable Parquet file"
    if kind == "nothing-positive":
        raw_folder(tmp_path, ratings.assign(rating=np.float32(2.0)), movies)
        return params_file(heldout_users=20), "nothing is left to train on"
    raw_folder(tmp_path, ratings.drop(columns="timestamp"), movies)
    return params_file(split="temporal"), "data.split=temporal needs timestamps"


@pytest.mark.parametrize(("command", "kind"), [
    ("download", "unknown-dataset"), ("download", "non-numeric-rating"), ("download", "corrupt-archive"),
    ("prepare", "no-raw-data"), ("prepare", "no-titles"), ("prepare", "corrupt-parquet"),
    ("prepare", "too-many-heldout-users"), ("prepare", "nothing-positive"),
    ("prepare", "temporal-without-timestamps"),
])
def test_bad_input_exits_1_with_one_error_line_and_writes_nothing(tiny, tmp_path, params_file, command, kind):
    setup = bad_download if command == "download" else bad_prepare
    params, expected = setup(kind, tmp_path, params_file, tiny)
    data = tmp_path / "data"
    before = sorted(p.name for p in data.iterdir()) if data.exists() else []
    if command == "download":
        result = invoke("download", "-p", params, "--out", data / "raw", "--no-progress")
    else:
        result = invoke("prepare", "-p", params, "--raw", data / "raw", "--out", data / "prepared",
                        "--stats", data / "stats.json")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # handled, not an uncaught exception
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.output
    after = sorted(p.name for p in data.iterdir()) if data.exists() else []
    assert after == before


def test_installed_command_reports_bad_input_in_one_line(tmp_path, params_file):
    multvae = Path(sys.executable).with_name("multvae")
    if not multvae.is_file():
        pytest.skip(f"the `multvae` command is not installed next to {sys.executable}")
    params = params_file(heldout_users=20)
    done = subprocess.run([multvae, "prepare", "-p", params, "--raw", tmp_path / "missing"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "run the download stage first" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(dump_params(values))
    return path


@pytest.mark.parametrize(("values", "expected"), [
    ({"data": {"dataset": "ml-5m"}},
     "data.dataset: 'ml-5m' is not one of 'ml-20m', 'ml-100k', 'ml-1m', 'ml-10m', 'ml-25m', 'ml-32m', "
     "'ml-latest', 'ml-latest-small', 'synthetic', 'auto'"),
    ({"data": {"heldout": 100}}, "data.heldout: unknown key; allowed here: dataset, source"),
    ({"optim": {"lr": -0.001}}, "optim.lr: expected greater than 0, got -0.001"),
    ({"model": {"hidden_dims": []}}, "model.hidden_dims: expected at least 1 value(s), got []"),
    ({"data": {"heldout_users": 0.5}}, "data.heldout_users: a fraction must be below 0.5"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, values, expected):
    path = write_yaml(tmp_path / "params.yaml", values)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_stage_outputs_replace_earlier_ones_as_a_whole(tiny, tmp_path, params_file):
    ratings, movies = tiny
    raw_folder(tmp_path, ratings, movies)
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir()
    (prepared / "stale.parquet").write_bytes(b"from an earlier run")
    result = invoke("prepare", "-p", params_file(heldout_users=20), "--raw", tmp_path / "data" / "raw",
                    "--out", prepared, "--stats", tmp_path / "data" / "stats.json")
    assert result.exit_code == 0, result.output
    assert [p.name for p in prepared.iterdir()] == ["fold-0"]
    assert sorted(p.name for p in (prepared / "fold-0").iterdir()) == sorted(
        [f"{name}.parquet" for name in ("users", "items", "train", "validation_foldin", "validation_target",
                                        "test_foldin", "test_target")] + ["manifest.json"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared", "raw", "stats.json"]
