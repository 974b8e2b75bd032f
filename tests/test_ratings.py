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


def write_generic(tiny, path, rng_seed: int = 0, header=("user_id", "song_id", "play_count"), shuffle=False):
    """The tiny ratings as an implicit-feedback file: text labels for users and items, a play count
    per row, tab-separated, as the Million Song Dataset's taste profile is (with a header added)."""
    ratings = tiny[0]
    rng = np.random.default_rng(rng_seed)
    frame = pd.DataFrame({header[0]: "user-" + ratings["userId"].astype(str),
                          header[1]: "SO" + ratings["movieId"].astype(str).str.zfill(6),
                          header[2]: rng.integers(1, 50, len(ratings))})
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=rng_seed)
    frame.to_csv(path, sep="\t", index=False, compression="gzip" if path.suffix == ".gz" else None)
    return frame


@pytest.mark.parametrize("name", ["plays.tsv", "plays.tsv.gz"])
def test_implicit_file_with_text_ids_reads_every_row_as_a_positive(tiny, tmp_path, name):
    from multvae.ratings import IMPLICIT_RATING, read_interactions

    written = write_generic(tiny, tmp_path / name)
    ratings, titles = read_interactions(tmp_path / name)
    assert len(ratings) == len(written)
    assert (ratings["rating"] == IMPLICIT_RATING).all() and titles is not None
    # the numbering is a bijection: each item's title is its own label, users keep their identity
    assert (titles.set_index("movieId").loc[ratings["movieId"], "title"].to_numpy()
            == written["song_id"].to_numpy()).all()
    assert ratings["userId"].nunique() == written["user_id"].nunique()
    assert (ratings.groupby("userId")["movieId"].count().sort_values().to_numpy()
            == written.groupby("user_id")["song_id"].count().sort_values().to_numpy()).all()


def test_the_numbering_depends_on_the_labels_not_the_row_order(tiny, tmp_path):
    from multvae.ratings import read_interactions

    write_generic(tiny, tmp_path / "a.tsv")
    write_generic(tiny, tmp_path / "b.tsv", shuffle=True)
    (a, ta), (b, tb) = read_interactions(tmp_path / "a.tsv"), read_interactions(tmp_path / "b.tsv")
    pd.testing.assert_frame_equal(ta, tb)
    key = ["userId", "movieId"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                  b.sort_values(key).reset_index(drop=True))


def test_generic_file_with_a_rating_and_iso_dates_keeps_them(tmp_path):
    from multvae.ratings import read_interactions

    path = write_text(tmp_path / "r.csv", "Customer_ID,ASIN,Stars,Time\nc2,B01,4,2020-01-01T00:00:00Z\n"
                                           "c1,B02,2.5,2020-01-02\n")
    ratings, titles = read_interactions(path)
    assert ratings.to_dict("list") == {"userId": [1, 0], "movieId": [0, 1], "rating": [4.0, 2.5],
                                       "timestamp": [1577836800, 1577923200]}
    assert titles is not None and titles["title"].tolist() == ["B01", "B02"]


def test_a_movielens_file_keeps_its_numeric_ids_and_no_labels(tiny, tmp_path):
    from multvae.ratings import read_interactions

    write_ratings_csv(tiny[0].head(100), tmp_path / "ratings.csv")
    ratings, titles = read_interactions(tmp_path / "ratings.csv")
    assert titles is None and ratings["userId"].tolist() == tiny[0].head(100)["userId"].tolist()


@pytest.mark.parametrize(("text", "message"), [
    ("user,item,count\na,x,3\nb,y,0\n", r"column count must hold whole counts .*'0' at data row 2"),
    ("user,item,plays\na,x,1.5\n", r"column plays must hold whole counts .*'1.5' at data row 1"),
    ("user,item,plays\na,x,many\n", r"column plays must hold whole counts .*'many' at data row 1"),
    ("user,item\na,x\n,y\n", r"column user has a missing value at data row 2"),
    ("user,item,score\na,x,7\n", r"column score must lie in 0..5 .* found 7 at data row 1"),
    ("user,item,score\na,x,good\n", r"column score must be numeric, found 'good' at data row 1"),
    ("user,item,timestamp\na,x,yesterday\n", r"column timestamp must hold Unix seconds or ISO 8601 dates, "
                                             r"found 'yesterday' at data row 1"),
    ("user,user_id,item\na,b,x\n", r"columns 'user' and 'user_id' both name the user"),
    ("user,item,rating,count\na,x,4,2\n", r"columns 'rating' and 'count' are a rating and a count"),
    ("visitor,item\na,x\n", r"no user column in the header visitor, item; user is one of user, userid"),
    ("user,item\n", r"the ratings file has no data rows"),
])
def test_bad_generic_file_names_file_column_and_row(tmp_path, text, message):
    path = write_text(tmp_path / "events.csv", text)
    with pytest.raises(RatingsError, match=rf"^{re.escape(str(path))}: {message}"):
        read_ratings(path)


def test_a_movielens_header_without_rating_is_not_read_as_implicit(tmp_path):
    """userId,movieId is MovieLens's layout, whose rating column is required: a file that lost it
    must not turn into one where every row is a positive."""
    with pytest.raises(RatingsError, match=r"missing column\(s\) rating"):
        read_ratings(write_text(tmp_path / "ratings.csv", "userId,movieId\n1,2\n"))


def test_the_shipped_data_as_an_implicit_log_gives_the_same_positives(ml_latest_small_ratings, tmp_path):
    """ml-latest-small's positives (rating >= 4) written as a user-item file with text labels and no
    rating read back to the same (user, movie) pairs: the generic route loses and adds nothing."""
    from multvae.ratings import read_interactions
    from multvae.split import binarize

    movielens = binarize(read_ratings(ml_latest_small_ratings), min_rating=4.0, min_user_positives=5)
    path = tmp_path / "positives.tsv"
    pd.DataFrame({"user": "u" + movielens["userId"].astype(str),
                  "item_id": "m" + movielens["movieId"].astype(str)}).to_csv(path, sep="\t", index=False)
    ratings, titles = read_interactions(path)
    implicit = binarize(ratings, min_rating=4.0, min_user_positives=5)
    assert titles is not None and len(implicit) == len(movielens)
    labels = titles.set_index("movieId")["title"]
    got = set(zip(implicit["userId"], labels.loc[implicit["movieId"]], strict=True))
    users = {code: f"u{u}" for code, u in enumerate(sorted(movielens["userId"].astype(str).unique()))}
    assert {(users[u], m) for u, m in got} == set(zip("u" + movielens["userId"].astype(str),
                                                      "m" + movielens["movieId"].astype(str), strict=True))


@pytest.mark.parametrize(("text", "message"), [
    ('user,item\na,x\nb,"x\nc,y\n', r"column item at data row 2 opens a quote that the line does not close"),
    ('"user, name",item\na,x\n', r"the header's columns could not be matched"),
    ("user,ts\na,1\n", r"no item column"),
    ("user,item,ts\na,x,1.5\n", r"column ts must hold whole numbers"),
])
def test_generic_files_that_would_misread_are_refused(tmp_path, text, message):
    with pytest.raises(RatingsError, match=message):
        read_ratings(write_text(tmp_path / "events.csv", text))


def test_labels_are_text_as_written_around_spaces_quotes_and_na(tmp_path):
    from multvae.ratings import read_interactions

    _, titles = read_interactions(write_text(tmp_path / "a.tsv", 'user\titem\na\t"Weird Al" Yankovic\n'
                                                                  "b\tNA\nc\tnull\nd\t x \ne\tx\n"))
    assert titles is not None
    assert titles["title"].tolist() == ['"Weird Al" Yankovic', "NA", "null", "x"]


@pytest.mark.parametrize("header", ["userId, movieId, rating", "UserId,MovieId", "\ufeffuserId,movieId"])
def test_movielens_headers_in_any_case_spacing_or_with_a_bom_keep_movielens_rules(tmp_path, header):
    """Such a file is MovieLens's: its numeric ids are kept, and without a rating it is an error,
    never an implicit data set with renumbered ids."""
    path = tmp_path / "ratings.csv"
    row = "10,20,4.0" if "rating" in header else "10,20"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    if "rating" in header:
        assert read_ratings(path)[["userId", "movieId"]].values.tolist() == [[10, 20]]
    else:
        with pytest.raises(RatingsError, match=r"missing column\(s\)"):
            read_ratings(path)


@pytest.mark.parametrize("header, delimiter", [("userid,movieid,rating,timestamp", ","),
                                               ("USERID,MovieId,Rating,TimeStamp", ","),
                                               ("userId\tmovieId\trating\ttimestamp", "\t")])
def test_movielens_columns_are_read_in_any_case_and_tab_separated(tmp_path, header, delimiter):
    rows = (["1", "2", "4.0", "978300760"], ["1", "3", "5", "978300761"])
    lines = [header, *(delimiter.join(r) for r in rows)]
    path = write_text(tmp_path / "ratings.csv", "\n".join(lines) + "\n")
    frame = read_ratings(path)
    assert frame.to_dict("list") == {"userId": [1, 1], "movieId": [2, 3], "rating": [4.0, 5.0],
                                     "timestamp": [978300760, 978300761]}


@pytest.mark.parametrize("value, hint", [("978300760000", True), ("4102444800", False), ("-5", False)])
def test_timestamps_must_be_seconds_up_to_now(tmp_path, value, hint):
    """Milliseconds among seconds, or a date in the future, would order a temporal split wrongly."""
    text = f"userId,movieId,rating,timestamp\n1,2,4,978300760\n1,3,5,{value}\n"
    path = write_text(tmp_path / "ratings.csv", text)
    with pytest.raises(RatingsError, match=rf"ratings\.csv: column timestamp must hold Unix seconds from "
                                           rf"1970 up to now .*found {value} at data row 2") as caught:
        read_ratings(path)
    assert ("milliseconds?" in str(caught.value)) == hint


def test_a_date_past_pandas_nanosecond_range_is_named_not_a_traceback(tmp_path):
    path = write_text(tmp_path / "plays.csv", "user,item,time\na,b,2000-01-01\na,c,2999-01-01\n")
    with pytest.raises(RatingsError, match=r"plays\.csv: column time must hold Unix seconds .* data row 2"):
        read_ratings(path)


def test_the_layouts_message_lists_each_columns_spellings(tmp_path):
    path = write_text(tmp_path / "r.csv", "userId,movieId,timestamp\n1,2,978300760\n")
    with pytest.raises(RatingsError) as caught:
        read_ratings(path)
    message = str(caught.value)
    assert "missing column(s) rating" in message
    assert "below" not in message
    for spelling in ("customerid", "movieid", "playcount", "datetime"):
        assert spelling in message
