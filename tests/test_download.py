"""The download stage's routes (release URL, local archive, local ratings file) and their failures.

Releases are served from `file://` URLs to archives built here, so the real fetch, checksum and
unpacking code runs without a network.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

import pandas as pd
import pytest

from multvae import download, identity
from multvae.download import DownloadError, Release, materialize
from multvae.identity import Known, content
from multvae.params import defaults
from multvae.ratings import RatingsError
from multvae.synthetic import generate

BASE, RUNTIME = defaults()


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative name -> bytes), to show a failure left it untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def tiny_is_every_release(monkeypatch, tiny):
    """These tests are about fetching, checksums and layouts: the tiny data stands in for every
    release's content (tests/test_identity.py checks identities against the real ones)."""
    found = content(tiny[0])
    for name in list(identity.KNOWN):
        known = Known(found.ratings, found.users, found.movies, found.sha256)
        monkeypatch.setitem(identity.KNOWN, name, known)


def publish(monkeypatch, dataset: str, url: str, md5: str | None) -> None:
    monkeypatch.setitem(download.RELEASES, dataset, Release(url, md5))


@pytest.fixture
def archive(make_zip, tiny, tmp_path):
    """An ML-style release archive of the tiny synthetic data, named like the ml-1m release."""
    ratings, movies = tiny
    (tmp_path / "server").mkdir()
    return make_zip(tmp_path / "server" / "ml-1m.zip", {
        "ml-1m/ratings.csv": ratings.to_csv(index=False),
        "ml-1m/movies.csv": movies.to_csv(index=False),
    })


@pytest.fixture
def out(tmp_path):
    """Where the stage writes (data/raw), inside a folder the test can check for leftovers."""
    (tmp_path / "data").mkdir()
    return tmp_path / "data" / "raw"


def test_release_with_matching_checksum_is_fetched_verified_and_written(archive, out, tiny, monkeypatch):
    publish(monkeypatch, "ml-1m", archive.as_uri(), md5_of(archive))
    info, _ = materialize(replace(BASE.data, dataset="ml-1m"), out,
                show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["movies.parquet", "ratings.parquet", "source.json"]
    assert [p.name for p in out.parent.iterdir()] == ["raw"]  # no temporary folders left
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ratings.parquet"), tiny[0])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "movies.parquet"), tiny[1])
    source = json.loads((out / "source.json").read_text())
    assert source["md5_verified"] is True and source["md5"] == md5_of(archive)
    assert source["input"]["url"] == archive.as_uri() and source["dataset"] == "ml-1m"
    assert info["ratings"] == len(tiny[0]) and info["has_timestamps"] is True


@pytest.mark.parametrize("existing", [False, True], ids=["no-previous-output", "previous-output"])
def test_checksum_mismatch_names_file_and_both_sums_and_leaves_no_output(archive, out, monkeypatch, existing):
    if existing:
        out.mkdir()
        (out / "ratings.parquet").write_bytes(b"previous run")
        (out / "source.json").write_text("{}")
    before = snapshot(out.parent)
    wrong = "0123456789abcdef0123456789abcdef"
    publish(monkeypatch, "ml-1m", archive.as_uri(), wrong)
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        materialize(replace(BASE.data, dataset="ml-1m"), out,
                show_progress=False)
    message = str(err.value)
    assert "ml-1m.zip" in message and md5_of(archive) in message and wrong in message
    assert out.exists() is existing
    assert snapshot(out.parent) == before
    assert sorted(p.name for p in out.parent.iterdir()) == (["raw"] if existing else [])


@pytest.mark.parametrize("good", [True, False], ids=["matching", "mismatching"])
def test_checksum_of_a_republished_release_is_read_from_its_md5_file(make_zip, tiny, tmp_path, out,
                                                                    monkeypatch, good):
    ratings, _ = tiny
    zip_path = make_zip(tmp_path / "ml-latest-small.zip",
                        {"ml-latest-small/ratings.csv": ratings.to_csv(index=False)})
    published = md5_of(zip_path) if good else "f" * 32
    (tmp_path / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {published}\n")
    publish(monkeypatch, "ml-latest-small", zip_path.as_uri(), None)
    if good:
        materialize(replace(BASE.data, dataset="ml-latest-small"), out,
                show_progress=False)
        assert json.loads((out / "source.json").read_text())["md5_verified"] is True
        assert len(pd.read_parquet(out / "ratings.parquet")) == len(ratings)
    else:
        with pytest.raises(DownloadError, match=f"checksum mismatch.*{published}"):
            materialize(replace(BASE.data, dataset="ml-latest-small"), out,
                show_progress=False)
        assert not out.exists()


@pytest.mark.parametrize("dataset", ["ml-20m", "ml-latest-small"])
def test_unreachable_release_fails_fast_and_points_to_data_source(out, monkeypatch, dataset):
    md5 = None if dataset == "ml-latest-small" else "0" * 32  # the .md5 file is fetched first
    publish(monkeypatch, dataset, f"https://nonexistent.invalid/{dataset}.zip", md5)
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        materialize(replace(BASE.data, dataset=dataset), out,
                show_progress=False)
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "cannot reach https://nonexistent.invalid/" in message and "data.source" in message
    assert "dvc exp run -S study=default" in message  # the study that runs offline
    assert not out.exists()


def test_a_download_cut_off_midway_is_a_download_error(out, monkeypatch):
    class Broken:
        headers = {"Content-Length": "1000000"}

        def __init__(self):
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError(104, "Connection reset by peer")
            return b"PK" + bytes(100)

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(DownloadError, match=r"ml-20m\.zip: the download broke off.*data\.source"):
        materialize(replace(BASE.data, dataset="ml-20m"), out,
                show_progress=False)
    assert not out.exists()


def corrupt(path, kind: str):
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"this is not a zip archive\n" * 100)
    else:  # damaged compressed data, central directory intact
        path.write_bytes(data[:1000] + b"\xff" * 64 + data[1064:])
    return path


@pytest.mark.parametrize("kind", ["truncated", "garbage", "damaged"])
def test_corrupt_local_archive_is_a_download_error_naming_it(archive, out, kind):
    corrupt(archive, kind)
    copy = archive.rename(archive.with_name("my-copy.zip"))  # not named like a release: no checksum
    with pytest.raises(DownloadError, match=r"my-copy\.zip: corrupt or truncated archive"):
        materialize(replace(BASE.data, dataset="auto", source=str(copy)), out,
                show_progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_corrupt_release_with_a_matching_checksum_fails_at_unpacking(archive, out, monkeypatch):
    corrupt(archive, "truncated")
    publish(monkeypatch, "ml-1m", archive.as_uri(), md5_of(archive))
    with pytest.raises(DownloadError, match=r"ml-1m\.zip: corrupt or truncated archive"):
        materialize(replace(BASE.data, dataset="ml-1m"), out,
                show_progress=False)
    assert not out.exists()


@pytest.mark.parametrize("entry", ["../evil.csv", "ml/../../evil.csv", "/tmp/evil.csv", "../ratings.csv"])
def test_archive_entry_leaving_the_target_folder_is_refused(make_zip, tiny, tmp_path, out, entry):
    members = {"ml/ratings.csv": tiny[0].head(50).to_csv(index=False), entry: "userId,movieId,rating\n"}
    zip_path = make_zip(tmp_path / "evil.zip", members)
    with pytest.raises(DownloadError, match="refusing unsafe path") as err:
        materialize(replace(BASE.data, dataset="auto", source=str(zip_path)), out,
                show_progress=False)
    assert entry in str(err.value) and "evil.zip" in str(err.value)
    assert not out.exists()
    assert not any(p.name in ("evil.csv", "ratings.csv") for p in tmp_path.rglob("*"))


def test_archive_without_ratings_is_refused(make_zip, tmp_path, out):
    zip_path = make_zip(tmp_path / "other.zip", {"ml/movies.csv": "movieId,title\n1,x\n"})
    with pytest.raises(DownloadError, match=r"other\.zip: no ratings file inside the archive; expected one "
                                            r"of ratings\.csv, ratings\.dat, u\.data"):
        materialize(replace(BASE.data, dataset="auto", source=str(zip_path)), out,
                show_progress=False)


def test_local_copy_named_like_the_release_is_verified_against_it(archive, out):
    # The tiny archive is called ml-1m.zip but is not the published ml-1m release.
    expected = download.RELEASES["ml-1m"].md5
    with pytest.raises(DownloadError, match=rf"ml-1m\.zip: checksum mismatch \(MD5 {md5_of(archive)}, "
                                            rf"the release publishes {expected}\)"):
        materialize(replace(BASE.data, dataset="ml-1m", source=str(archive)), out,
                show_progress=False)
    assert not out.exists()


def test_local_archive_in_any_folder_gives_ratings_and_titles(make_zip, tiny, tmp_path, out):
    ratings, movies = tiny
    zip_path = make_zip(tmp_path / "my-copy.zip", {
        "something/ratings.csv": ratings.to_csv(index=False),
        "something/movies.csv": movies.to_csv(index=False),
        "something/README.txt": "not needed",
    })
    info, _ = materialize(replace(BASE.data, dataset="auto", source=str(zip_path)), out,
                show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ratings.parquet"), ratings)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "movies.parquet"), movies)
    assert info["input"]["source"] == str(zip_path) and "md5_verified" not in info


@pytest.mark.parametrize("name", ["ratings.dat", "ratings.dat.gz", "ratings.csv.gz", "no-timestamps.csv"])
def test_local_ratings_file_in_every_layout(write_dat, tiny, tmp_path, out, name):
    ratings = tiny[0]
    path = tmp_path / name
    if ".dat" in name:
        write_dat(ratings, path)
    elif name == "no-timestamps.csv":
        ratings = ratings.drop(columns="timestamp")
        ratings.to_csv(path, index=False)
    else:
        ratings.to_csv(path, index=False, compression="gzip")
    info, _ = materialize(replace(BASE.data, dataset="auto", source=str(path)), out,
                show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ratings.parquet"), ratings)
    assert info["has_timestamps"] is ("timestamp" in ratings.columns)
    assert info["ratings"] == len(ratings) and info["users"] == ratings["userId"].nunique()


def test_titles_next_to_a_local_ratings_file_are_used(tiny, tmp_path, out):
    ratings, movies = tiny
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    movies.to_csv(tmp_path / "movies.csv", index=False)
    materialize(replace(BASE.data, dataset="auto", source=str(tmp_path / "ratings.csv")), out,
                show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "movies.parquet"), movies)


def test_bad_local_ratings_file_is_a_ratings_error_and_writes_nothing(tmp_path, out):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,2,4.0\n1,3,five\n")
    with pytest.raises(RatingsError, match=r"ratings\.csv: column rating must be numeric, found 'five'"):
        materialize(replace(BASE.data, dataset="auto", source=str(path)), out,
                show_progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_missing_local_source_names_data_source(tmp_path, out):
    with pytest.raises(DownloadError, match=r"data\.source: .*absent\.zip does not exist"):
        materialize(replace(BASE.data, dataset="auto", source=str(tmp_path / "absent.zip")), out,
                    show_progress=False)


def test_synthetic_dataset_writes_the_seeded_generator_output(out):
    cfg = replace(BASE.data.synthetic, users=50, items=40, ratings_per_user=10, tastes=4, seed=7)
    info, _ = materialize(replace(BASE.data, dataset="synthetic", synthetic=cfg), out,
                show_progress=False)
    ratings, movies = generate(cfg)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ratings.parquet"), ratings)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "movies.parquet"), movies)
    assert info["generator"] == "multvae.synthetic" and info["users"] == 50
    other = generate(replace(BASE.data.synthetic, users=50, items=40, ratings_per_user=10, tastes=4,
                             seed=8))[0]
    assert not ratings.equals(other)


def test_a_relative_source_writes_the_same_raw_data_wherever_the_checkout_lies(tmp_path, tiny, monkeypatch):
    """DVC hashes data/raw: an absolute path recorded in source.json would make two clones in other
    folders disagree, and the run-cache of prepare and train would not carry between them."""
    written = []
    for clone in ("a", "b/deeper"):
        root = tmp_path / clone
        (root / "data").mkdir(parents=True)
        tiny[0].to_csv(root / "data" / "ratings.csv", index=False)
        monkeypatch.chdir(root)
        materialize(replace(BASE.data, dataset="auto", source="data/ratings.csv"), root / "raw",
                    show_progress=False)
        written.append({f.name: f.read_bytes() for f in sorted((root / "raw").iterdir())})
    assert written[0] == written[1]
    assert json.loads(written[0]["source.json"])["input"]["source"] == "data/ratings.csv"


def test_an_implicit_log_with_text_ids_is_prepared_like_any_ratings(tiny, tmp_path, out):
    """A listening log (user, track, timestamp; a pair may repeat): every distinct pair is one
    positive whatever data.min_rating is, and the tracks' own labels become the titles."""
    from multvae.split import binarize

    ratings = tiny[0]
    log = pd.DataFrame({"user": "u" + ratings["userId"].astype(str),
                        "track_id": "t" + ratings["movieId"].astype(str), "timestamp": ratings["timestamp"]})
    log = pd.concat([log, log.head(50).assign(timestamp=log.head(50)["timestamp"] + 1)])  # 50 replays
    path = tmp_path / "listens.csv.gz"
    log.to_csv(path, index=False, compression="gzip")
    info, _ = materialize(replace(BASE.data, dataset="auto", source=str(path)), out,
                show_progress=False)
    assert info["dataset"] == "custom: listens.csv.gz" and info["duplicate_ratings_dropped"] == 50
    assert info["ratings"] == len(ratings) and info["users"] == ratings["userId"].nunique()
    raw = pd.read_parquet(out / "ratings.parquet")
    titles = pd.read_parquet(out / "movies.parquet").set_index("movieId")["title"]
    assert sorted(titles.loc[raw["movieId"]].unique()) == sorted(log["track_id"].unique())
    assert len(binarize(raw, min_rating=4.0, min_user_positives=1)) == len(ratings)
