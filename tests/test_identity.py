"""The dataset's identity comes from its content: releases recognised whatever the layout or name,
false claims refused, local sources tracked by their bytes, every release layout read."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from multvae.download import DownloadError, materialize, resolve_source
from multvae.identity import KNOWN, IdentityError, content, label
from multvae.params import defaults
from multvae.ratings import RatingsError, read_ratings

BASE, RUNTIME = defaults()


def test_a_claim_that_the_content_does_not_support_names_what_was_expected(tiny, tmp_path):
    path = tmp_path / "ratings.csv"
    tiny[0].to_csv(path, index=False)
    with pytest.raises(IdentityError, match=r"ratings\.csv: claimed to be ml-20m \(20,000,263 ratings of "
                                            r"138,493 users on 26,744 movies\) but holds 7,167 ratings"):
        materialize(replace(BASE.data, dataset="ml-20m", source=str(path)), tmp_path / "raw",
                    show_progress=False)
    assert not (tmp_path / "raw").exists()


def test_unclaimed_data_is_labelled_custom_with_its_fingerprint(tiny, tmp_path):
    path = tmp_path / "mine.csv"
    tiny[0].to_csv(path, index=False)
    info, wrote = materialize(replace(BASE.data, dataset="auto", source=str(path)), tmp_path / "raw",
                              show_progress=False)
    assert wrote and info["dataset"] == "custom: mine.csv"
    assert info["content_sha256"] == content(tiny[0]).sha256 and len(info["content_sha256"]) == 16
    assert info["input"]["sha256"] and info["input"]["size"] == path.stat().st_size
    assert info["rows"] == len(tiny[0])


def test_a_local_source_counts_by_its_bytes(tiny, tmp_path):
    path, out = tmp_path / "mine.csv", tmp_path / "raw"
    tiny[0].to_csv(path, index=False)
    cfg = replace(BASE.data, dataset="auto", source=str(path))
    materialize(cfg, out, show_progress=False)
    stamp = (out / "ratings.parquet").stat().st_mtime_ns
    info, wrote = materialize(cfg, out, show_progress=False)
    assert not wrote and (out / "ratings.parquet").stat().st_mtime_ns == stamp
    tiny[0].iloc[:-50].to_csv(path, index=False)  # other ratings, same path
    info, wrote = materialize(cfg, out, show_progress=False)
    assert wrote and info["ratings"] == len(tiny[0]) - 50
    assert len(pd.read_parquet(out / "ratings.parquet")) == len(tiny[0]) - 50


def test_a_relative_source_is_found_from_an_experiments_temporary_copy(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.csv").write_text("userId,movieId,rating\n1,2,4\n")
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12"
    workspace.mkdir(parents=True)
    assert resolve_source("data/r.csv", workspace) == tmp_path / "data" / "r.csv"
    assert resolve_source("data/r.csv", tmp_path) == tmp_path / "data" / "r.csv"
    with pytest.raises(DownloadError, match=r"data\.source: data/none\.csv does not exist \(looked at "):
        resolve_source("data/none.csv", workspace)


def test_ml100k_layout_tab_separated_ratings_and_pipe_separated_titles(tiny, make_zip, tmp_path):
    ratings, movies = tiny
    u_data = ratings.to_csv(sep="\t", header=False, index=False)
    u_item = "".join(f"{m}|{t}|01-Jan-1995||http://x|0|1\n" for m, t in movies.itertuples(index=False))
    archive = make_zip(tmp_path / "copy.zip", {"ml-100k/u.data": u_data,
                                               "ml-100k/u.item": u_item.encode("latin-1")})
    info, _ = materialize(replace(BASE.data, dataset="auto", source=str(archive)), tmp_path / "raw",
                          show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw" / "ratings.parquet"), ratings)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw" / "movies.parquet"), movies)
    assert info["dataset"] == "custom: copy.zip"


def test_a_file_in_no_known_layout_lists_the_layouts_understood(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user;item;stars\n1;2;4\n")
    with pytest.raises(RatingsError, match=r"r\.csv: missing column\(s\) userId, movieId, rating; understood "
                                           r"layouts: CSV or TSV with a header .*u\.data: ML-100K"):
        read_ratings(path)


def test_the_real_ml_latest_small_is_recognised_whatever_its_file_name(ml_latest_small_ratings, tmp_path):
    ratings = read_ratings(ml_latest_small_ratings)
    renamed = tmp_path / "whatever.csv"
    ratings.sample(frac=1.0, random_state=0).to_csv(renamed, index=False)  # shuffled rows, same triples
    info, _ = materialize(replace(BASE.data, dataset="auto", source=str(renamed)), tmp_path / "raw",
                          show_progress=False)
    assert info["dataset"] == "ml-latest-small"
    assert (info["ratings"], info["users"], info["movies"]) == (100_836, 610, 9_724)


@pytest.mark.slow
def test_ml1m_converted_to_the_dat_layout_is_still_ml1m(ml1m_ratings, write_dat, tmp_path):
    ratings = read_ratings(ml1m_ratings).assign(timestamp=0)
    dat = write_dat(ratings, tmp_path / "ratings.dat")
    info, _ = materialize(replace(BASE.data, dataset="ml-1m", source=str(dat)), tmp_path / "raw",
                          show_progress=False)
    assert info["dataset"] == "ml-1m" and info["content_sha256"] == KNOWN["ml-1m"].sha256


def test_label_rules():
    found = content(pd.DataFrame({"userId": [1, 1, 2], "movieId": [5, 6, 5], "rating": [4.0, 3.5, 1.0]}))
    assert label(found, None, "x.csv", "x.csv") == "custom: x.csv"
    assert label(found, "ml-latest", "x.csv", "x.csv") == "ml-latest"  # no fixed content to check
    with pytest.raises(IdentityError, match=r"claimed to be ml-1m"):
        label(found, "ml-1m", "x.csv", "x.csv")


def test_stats_carry_the_label(tiny, tmp_path, params_file):
    from typer.testing import CliRunner

    from stages.cli import app

    path = tmp_path / "mine.csv"
    tiny[0].to_csv(path, index=False)
    params = params_file(source=str(path), heldout_users=20)
    runner = CliRunner()
    assert runner.invoke(app, ["download", "-p", str(params), "--out", str(tmp_path / "raw")]).exit_code == 0
    stats = tmp_path / "stats.json"
    result = runner.invoke(app, ["prepare", "-p", str(params), "--raw", str(tmp_path / "raw"),
                                 "--out", str(tmp_path / "prepared"), "--stats", str(stats)])
    assert result.exit_code == 0, result.output
    assert json.loads(stats.read_text())["dataset"] == "custom: mine.csv"
