"""Reading ratings and titles: every MovieLens layout gives one schema; bad files name file and column."""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from multvae.ratings import RatingsError, read_movies, read_ratings
from multvae.synthetic import write_ratings_csv

FORMATS = ["ratings.csv", "ratings.csv.gz", "ratings.dat", "ratings.dat.gz"]


def write_text(path, text: str):
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_rows(path, rows: list[list[str]], header: Sequence[str] | None = ("userId", "movieId", "rating",
                                                                         "timestamp")):
    """Rows in the layout the file name asks for: `::` lines for .dat, CSV with a header otherwise."""
    if ".dat" in path.name:
        return write_text(path, "".join("::".join(r) + "\n" for r in rows))
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    return write_text(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("name", FORMATS)
def test_every_layout_reads_to_the_same_schema(write_dat, tiny, tmp_path, name):
    ratings = tiny[0].head(500)
    path = tmp_path / name
    if ".dat" in name:
        write_dat(ratings, path)
    else:
        write_ratings_csv(ratings, path, gzip=name.endswith(".gz"))
    got = read_ratings(path)
    assert got.dtypes.to_dict() == {"userId": np.int64, "movieId": np.int64, "rating": np.float32,
                                    "timestamp": np.int64}
    pd.testing.assert_frame_equal(got, ratings.reset_index(drop=True))


def test_csv_without_timestamps_has_no_timestamp_column(tmp_path):
    path = write_rows(tmp_path / "r.csv", [["1", "10", "4.5"], ["2", "20", "3"]],
                      header=["userId", "movieId", "rating"])
    got = read_ratings(path)
    assert list(got.columns) == ["userId", "movieId", "rating"]
    assert got["rating"].tolist() == [4.5, 3.0]


@pytest.mark.parametrize("name", FORMATS)
def test_missing_rating_column_names_file_and_column(tmp_path, name):
    path = tmp_path / name
    if ".dat" in name:
        write_text(path, "1::10\n2::20\n")
    else:
        write_text(path, "userId,movieId,timestamp\n1,10,5\n")
    with pytest.raises(RatingsError, match=r"missing column\(s\) rating") as err:
        read_ratings(path)
    assert name in str(err.value)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("column", ["userId", "movieId", "rating", "timestamp"])
def test_non_numeric_value_names_file_column_and_row(tmp_path, name, column):
    rows = [["1", "10", "4.0", "100"], ["1", "11", "5.0", "101"], ["2", "12", "3.5", "102"]]
    rows[1][["userId", "movieId", "rating", "timestamp"].index(column)] = "oops"
    path = write_rows(tmp_path / name, rows)
    with pytest.raises(RatingsError) as err:
        read_ratings(path)
    message = str(err.value)
    assert name in message and f"column {column} must be numeric" in message
    assert "'oops'" in message and "data row 2" in message


def test_non_numeric_value_far_into_a_large_file_is_named(tmp_path):
    # Past the first 1 MB block that Arrow reads (and infers the column types from).
    n = 120_000
    frame = pd.DataFrame({"userId": np.arange(n) // 40 + 1, "movieId": np.arange(n) % 997 + 1,
                          "rating": 4.0, "timestamp": 1_000_000})
    text = frame.to_csv(index=False).replace(f"\n{n // 40},{(n - 3) % 997 + 1},", "\nx,1,", 1)
    path = write_text(tmp_path / "big.csv", text)
    with pytest.raises(RatingsError, match=r"big\.csv: column userId must be numeric, found 'x'"):
        read_ratings(path)


@pytest.mark.parametrize("name", ["ratings.csv", "ratings.csv.gz"])
def test_missing_value_names_column_and_row(tmp_path, name):
    path = write_rows(tmp_path / name, [["1", "10", "4.0", "1"], ["1", "11", "", "2"]])
    with pytest.raises(RatingsError, match=r"column rating has a missing value at data row 2"):
        read_ratings(path)


def test_header_only_empty_and_absent_files_are_clear_errors(tmp_path):
    with pytest.raises(RatingsError, match="no data rows"):
        read_ratings(write_text(tmp_path / "h.csv", "userId,movieId,rating,timestamp\n"))
    with pytest.raises(RatingsError, match="empty"):
        read_ratings(write_text(tmp_path / "e.csv", ""))
    with pytest.raises(RatingsError, match="not found"):
        read_ratings(tmp_path / "absent.csv")


def test_a_file_named_gz_that_is_not_gzip_names_the_file(tmp_path):
    path = tmp_path / "ratings.csv.gz"
    path.write_text("userId,movieId,rating\n1,2,4\n")
    with pytest.raises(RatingsError, match=r"ratings\.csv\.gz: cannot be read"):
        read_ratings(path)


def test_movies_from_csv_and_latin1_dat(tmp_path):
    csv = tmp_path / "movies.csv"
    csv.write_text('movieId,title,genres\n1,"Toy Story (1995)",Animation\n2,"Heat, The (1995)",Crime\n')
    assert read_movies(csv).to_dict("list") == {"movieId": [1, 2],
                                                "title": ["Toy Story (1995)", "Heat, The (1995)"]}
    dat = tmp_path / "movies.dat"
    dat.write_bytes("1::Toy Story (1995)::Animation\n2::Misérables, Les (1995)::Drama\n".encode("latin-1"))
    assert read_movies(dat)["title"].tolist() == ["Toy Story (1995)", "Misérables, Les (1995)"]


def test_unreadable_movies_file_is_a_ratings_error_naming_it(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("id,name\n1,x\n")
    with pytest.raises(RatingsError, match=r"movies\.csv: not a readable movies file"):
        read_movies(path)


@pytest.mark.parametrize(("ids", "found"), [
    (["99999999999999999991", "99999999999999999992"], "about 1e+20"),  # beyond uint64: read as floats
    (["18446744073709551610"], "about 1.84467e+19"),                    # fits uint64, not int64
    (["9007199254740993.0"], "about 9.0072e+15"),                       # a float above 2**53: inexact
])
def test_ids_that_do_not_fit_int64_exactly_are_refused_with_the_row(tmp_path, ids, found):
    """Cast to int64 they would wrap or round into one id: users would merge and their ratings be
    counted as duplicates, without a word."""
    path = tmp_path / "ratings.csv"
    rows = "".join(f"{u},1{i},4.0\n" for i, u in enumerate(ids))
    path.write_text("userId,movieId,rating\n1,10,4.0\n" + rows)
    with pytest.raises(RatingsError, match=rf"{path}: column userId must hold ids that fit a 64-bit integer "
                                           rf".*found {re.escape(found)} at data row 2$"):
        read_ratings(path)


def test_the_largest_int64_id_is_kept_exactly(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,10,4.0\n9223372036854775807,10,4.0\n")
    assert read_ratings(path)["userId"].tolist() == [1, 2**63 - 1]
