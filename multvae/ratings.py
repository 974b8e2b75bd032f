"""Read ratings files and movie titles into one schema: MovieLens's layouts and any user-item file.

ML-1M/10M use `::`-separated `.dat` files without a header; the others use CSV with a header.
Any other data set (plays, clicks, purchases) is read from CSV or TSV whose header names its user
and item columns; ids there are labels of any text. Files may be gzipped. The result always has
userId, movieId, rating and, when the file has one, timestamp, so that everything downstream is
format-free.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from multvae.errors import MultVAEError

RATING_COLUMNS = ("userId", "movieId", "rating")
RATING_RANGE = (0.0, 5.0)  # every MovieLens release rates on 0.5-5 or 1-5 stars
# Column names of a generic user-item file, compared in lower case without '_', '-' or spaces.
# MovieLens's own names (userId, movieId) keep MovieLens's rules: numeric ids and a rating column.
ALIASES = {
    "user": ("user", "userid", "uid", "customerid", "visitorid", "reviewerid"),
    "item": ("item", "itemid", "iid", "movieid", "songid", "trackid", "artistid", "productid", "asin",
             "bookid", "isbn"),
    "rating": ("rating", "score", "stars"),
    "count": ("count", "plays", "playcount", "listens", "clicks", "frequency"),
    "timestamp": ("timestamp", "ts", "time", "datetime"),
}
LAYOUTS = ("CSV or TSV with a header userId,movieId,rating[,timestamp] (ML-20M, 25M, 32M, latest; "
           "names in any case)",
           "userId::movieId::rating[::timestamp] lines (.dat: ML-1M, ML-10M)",
           "tab-separated user, item, rating, timestamp without a header (u.data: ML-100K)",
           "CSV or TSV with a header user,item[,rating|count][,timestamp] (any implicit or explicit "
           "feedback; " + "; ".join(f"{role}: {'/'.join(names)}" for role, names in ALIASES.items())
           + "; any case, '_' or '-' ignored)")
# An implicit row (no rating column, or a count) is a positive: it gets the top of the star scale,
# so that binarising at any data.min_rating keeps it.
IMPLICIT_RATING = 5.0
HEADER_BYTES = 1 << 16  # enough for any header line
BOM = "\xef\xbb\xbf"  # UTF-8's byte-order mark as latin-1 text (Arrow skips it when reading)


class RatingsError(MultVAEError, ValueError):
    """A ratings or movies file cannot be read; the message names the file."""


def _flat(exc: BaseException) -> str:
    """A parser's message on one line (pyarrow quotes the offending rows, newlines included)."""
    return " ".join(str(exc).split())


def _open_text_head(path: Path, n: int = 4096) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(n).decode("latin-1")
    except (OSError, EOFError) as exc:
        raise RatingsError(f"{path}: cannot be read ({exc})") from exc


def read_ratings(path: Path | str) -> pd.DataFrame:
    """userId, movieId (int64), rating (float32) and, if present, timestamp (int64)."""
    return read_interactions(path)[0]


def read_interactions(path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The ratings, and for a generic user-item file its items' own labels as titles (movieId,
    title), as its ids are renumbered; None for MovieLens's layouts, whose ids are kept."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"{path}: ratings file not found")
    head = _open_text_head(path, HEADER_BYTES).removeprefix(BOM)
    if not head.strip():
        raise RatingsError(f"{path}: the ratings file is empty")
    first_line = head.splitlines()[0]
    if path.name.removesuffix(".gz").endswith(".dat") and "::" not in first_line:
        raise RatingsError(f"{path}: a .dat ratings file has lines userId::movieId::rating[::timestamp] "
                           f"(the layout of ML-1M and ML-10M), but its first line is {first_line[:60]!r}")
    delimiter = "\t" if "\t" in first_line else ","
    roles = _generic_roles(first_line.split(delimiter), path)
    if "::" not in first_line and roles is not None:
        try:
            return _read_generic(path, delimiter, roles)
        except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as exc:
            raise RatingsError(f"{path}: not a readable ratings file ({_flat(exc)})") from exc
    reader: Callable[..., pd.DataFrame]
    if "::" in first_line:
        reader = _read_dat
    elif "\t" in first_line and not _movielens_header(first_line.split("\t")):
        reader = _read_tsv
    else:
        reader = partial(_read_csv, delimiter=delimiter)
    try:
        frame = reader(path)
    except pa.ArrowInvalid as exc:
        # Mostly a value that is not a number; read every column as text to name the column.
        try:
            frame = reader(path, as_text=True)
        except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError):
            raise RatingsError(f"{path}: not a readable ratings file ({_flat(exc)})") from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RatingsError(f"{path}: not a readable ratings file ({_flat(exc)})") from exc
    return _check_ratings(frame, path), None


def _movielens_header(names: list[str]) -> bool:
    return {"userid", "movieid"} <= {n.strip().strip('"').lower() for n in names}


def _generic_roles(header: list[str], path: Path) -> dict[str, str] | None:
    """Which of the header's columns is the user, the item, the rating or count and the timestamp;
    None when the header is MovieLens's own (userId and movieId) or no header at all."""
    names = [c.strip('"') for c in header]
    if _movielens_header(names):
        return None  # MovieLens's header, in any case or spacing: MovieLens's rules
    roles: dict[str, str] = {}
    for name in names:
        key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
        role = next((r for r, spellings in ALIASES.items() if key in spellings), None)
        if role is None:
            continue
        if role in roles:
            raise RatingsError(f"{path}: columns {roles[role]!r} and {name!r} both name the {role}; "
                               "rename or drop one")
        roles[role] = name
    if not roles:
        return None  # no header: a MovieLens layout without one, or an error that lists the layouts
    if "rating" in roles and "count" in roles:
        raise RatingsError(f"{path}: columns {roles['rating']!r} and {roles['count']!r} are a rating and a "
                           "count; keep one (a rating is binarised at data.min_rating, any count >= 1 "
                           "is a positive)")
    missing = [r for r in ("user", "item") if r not in roles]
    if missing:
        raise RatingsError(f"{path}: no {' or '.join(missing)} column in the header {', '.join(names)}; "
                           + "; ".join(f"{r} is one of {', '.join(ALIASES[r])}" for r in missing)
                           + " (any case, '_' or '-' ignored)")
    return roles


def _read_generic(path: Path, delimiter: str, roles: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user-item file: ids are text labels numbered in sorted order (so the same file always
    gives the same numbers); every row is a positive unless the file has a rating column."""
    try:
        table = pacsv.read_csv(
            path,
            # a tab-separated file is not quoted: a '"' in a label is part of it
            parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                             quote_char='"' if delimiter == "," else False),
            # only an empty field is missing: "NA" or "null" may be a label
            convert_options=pacsv.ConvertOptions(include_columns=list(roles.values()),
                                                 column_types={c: pa.string() for c in roles.values()},
                                                 strings_can_be_null=True, null_values=[""]),
        )
    except KeyError as exc:  # a header field the line split differently from Arrow (quotes)
        raise RatingsError(f"{path}: the header's columns could not be matched ({exc}); write the "
                           "header without quotes") from exc
    frame = table.to_pandas()
    if frame.empty:
        raise RatingsError(f"{path}: the ratings file has no data rows")
    for column in frame.columns:
        values = frame[column].str.strip()  # "a, x" is item "x"
        missing = values.isna().to_numpy() | (values == "").to_numpy()
        if missing.any():
            raise RatingsError(f"{path}: column {column} has a missing value at data row "
                               f"{int(np.flatnonzero(missing)[0]) + 1}")
        broken = values.str.contains("\n", regex=False).to_numpy()
        if broken.any():
            raise RatingsError(f"{path}: column {column} at data row {int(np.flatnonzero(broken)[0]) + 1} "
                               "opens a quote that the line does not close")
        frame[column] = values
    users, _ = _number_labels(frame[roles["user"]])
    items, labels = _number_labels(frame[roles["item"]])
    out = pd.DataFrame({"userId": users, "movieId": items})
    if "rating" in roles:
        out["rating"] = frame[roles["rating"]]
    else:
        if "count" in roles:
            _check_counts(frame[roles["count"]], roles["count"], path)
        out["rating"] = IMPLICIT_RATING
    if "timestamp" in roles:
        out["timestamp"] = _seconds(frame[roles["timestamp"]], roles["timestamp"], path)
    named = {"rating": roles.get("rating", "rating"), "timestamp": roles.get("timestamp", "timestamp")}
    titles = pd.DataFrame({"movieId": np.arange(len(labels), dtype=np.int64), "title": labels})
    return _check_ratings(out, path, named), titles


def _number_labels(labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each label's position among the sorted distinct labels, and those labels."""
    codes, distinct = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), np.asarray(distinct, dtype=object)


def _check_counts(values: pd.Series, column: str, path: Path) -> None:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy()
    bad = np.isnan(numbers) | (numbers < 1) | (numbers % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RatingsError(f"{path}: column {column} must hold whole counts of at least 1 (every row is "
                           f"a positive), found {values.iloc[row]!r} at data row {row + 1}")


def _seconds(values: pd.Series, column: str, path: Path) -> pd.Series:
    """Numbers as they are (Unix seconds), else dates and times (ISO 8601) as Unix seconds."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers
    times = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise RatingsError(f"{path}: column {column} must hold Unix seconds or ISO 8601 dates, found "
                           f"{values.iloc[row]!r} at data row {row + 1}")
    return times.dt.as_unit("s").astype(np.int64)  # any unit pandas chose, even past 2262


def _text_types(names: list[str]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)


def _read_headerless(path: Path, names: list[str], delimiter: str, as_text: bool) -> pa.Table:
    """A ratings file without a header row, its columns named `names`."""
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=_text_types(names) if as_text else pacsv.ConvertOptions(
            column_types={"rating": pa.float64()}),
    )


def _read_dat(path: Path, as_text: bool = False) -> pd.DataFrame:
    names = ["userId", "e1", "movieId", "e2", "rating", "e3", "timestamp"][: _dat_width(path)]
    table = _read_headerless(path, names, ":", as_text)
    missing = [c for c in RATING_COLUMNS if c not in table.column_names]
    if missing:
        raise RatingsError(
            f"{path}: missing column(s) {', '.join(missing)}; expected lines of "
            "userId::movieId::rating[::timestamp]"
        )
    keep = [c for c in ("userId", "movieId", "rating", "timestamp") if c in table.column_names]
    return table.select(keep).to_pandas()


def _dat_width(path: Path) -> int:
    """`a::b::c::d` splits on ':' into 7 fields (the empty ones between each '::' pair)."""
    first = _open_text_head(path).splitlines()[0]
    return len(first.split(":"))


def _read_csv(path: Path, as_text: bool = False, delimiter: str = ",") -> pd.DataFrame:
    """MovieLens's CSV (or the same columns tab-separated); its column names in any case."""
    fields = _open_text_head(path).splitlines()[0].split(delimiter)
    raw_header = [*fields, *(f.strip('"') for f in fields)]  # Arrow drops the quotes of a quoted name
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=_text_types(raw_header) if as_text else pacsv.ConvertOptions(
            column_types={n: pa.float64() for n in raw_header if n.strip().lower() == "rating"}),
    )
    canonical = {c.lower(): c for c in ("userId", "movieId", "rating", "timestamp")}
    header = [canonical.get(c.strip().lower(), c.strip()) for c in table.column_names]
    if len(set(header)) < len(header):
        raise RatingsError(f"{path}: the header {', '.join(table.column_names)} names a column twice")
    table = table.rename_columns(header)
    missing = [c for c in RATING_COLUMNS if c not in header]
    if missing:
        raise RatingsError(
            f"{path}: missing column(s) {', '.join(missing)}; understood layouts: {'; '.join(LAYOUTS)}")
    keep = [c for c in ("userId", "movieId", "rating", "timestamp") if c in header]
    return table.select(keep).to_pandas()


def _read_tsv(path: Path, as_text: bool = False) -> pd.DataFrame:
    """ML-100K's u.data: user id, item id, rating, timestamp, tab-separated, no header."""
    return _read_headerless(path, ["userId", "movieId", "rating", "timestamp"], "\t", as_text).to_pandas()


# An id read as a float (the reader falls back to float when a value does not fit 64-bit integers,
# or is written as 12.0) is exact only up to 2**53; above that, distinct ids would merge.
EXACT_FLOAT_ID = 2**53


def _check_id_range(values: pd.Series, column: str, path: Path) -> None:
    """Ids must convert to int64 exactly: beyond its range a cast wraps them all to one value."""
    array = values.to_numpy()
    if pd.api.types.is_float_dtype(values):
        bad = np.abs(array) >= EXACT_FLOAT_ID
    elif pd.api.types.is_unsigned_integer_dtype(values):
        bad = array > np.iinfo(np.int64).max
    else:
        return
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = f"about {float(array[row]):.6g}" if array.dtype.kind == "f" else str(array[row])
        raise RatingsError(f"{path}: column {column} must hold ids that fit a 64-bit integer exactly "
                           f"(up to 2**53 where the column holds a larger number or a decimal point), "
                           f"found {found} at data row {row + 1}")


MILLENNIUM_MS = 946_684_800_000  # 2000-01-01 in milliseconds: a timestamp above it is ms, not seconds


def _check_seconds(values: pd.Series, column: str, path: Path) -> None:
    """Unix seconds between 1970 and the moment of reading: milliseconds, or a mix of the two units,
    would order a temporal split wrongly without a word."""
    now = time.time()
    array = values.to_numpy(dtype=np.float64)
    bad = ~((array >= 0) & (array <= now))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        hint = " (milliseconds? divide by 1000)" if MILLENNIUM_MS <= array[row] <= now * 1000 else ""
        raise RatingsError(f"{path}: column {column} must hold Unix seconds from 1970 up to now "
                           f"({time.strftime('%Y-%m-%d', time.gmtime(now))}), found {array[row]:.0f} "
                           f"at data row {row + 1}{hint}")


def _check_ratings(frame: pd.DataFrame, path: Path, named: dict[str, str] | None = None) -> pd.DataFrame:
    """Types, ranges and missing values; `named` gives the file's own names of schema columns."""
    named = named or {}
    if frame.empty:
        raise RatingsError(f"{path}: the ratings file has no data rows")
    out = {}
    for column in frame.columns:
        values = frame[column]
        shown = named.get(column, column)
        if not (pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values)):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = values[numeric.isna() & values.notna()]
            if len(bad):
                raise RatingsError(f"{path}: column {shown} must be numeric, found {bad.iloc[0]!r} "
                                   f"at data row {bad.index[0] + 1}")
            values = numeric
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise RatingsError(f"{path}: column {shown} has a missing value at data row {row + 1}")
        if column == "timestamp":
            _check_seconds(values, shown, path)
        if column in ("userId", "movieId", "timestamp"):
            with np.errstate(invalid="ignore"):
                fraction = values.to_numpy() % 1 != 0  # an infinite id too
            if fraction.any():
                row = int(np.flatnonzero(fraction)[0])
                raise RatingsError(f"{path}: column {shown} must hold whole numbers (ids), found "
                                   f"{float(values.iloc[row]):g} at data row {row + 1}")
            _check_id_range(values, shown, path)
        out[column] = values
    rating = out["rating"].to_numpy()
    outside = (rating < RATING_RANGE[0]) | (rating > RATING_RANGE[1])
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise RatingsError(f"{path}: column {named.get('rating', 'rating')} must lie in "
                           f"{RATING_RANGE[0]:g}..{RATING_RANGE[1]:g} "
                           f"(MovieLens's star scale), found {float(rating[row]):g} at data row {row + 1}")
    result = pd.DataFrame({
        "userId": out["userId"].astype(np.int64),
        "movieId": out["movieId"].astype(np.int64),
        "rating": out["rating"].astype(np.float32),
    })
    if "timestamp" in out:
        result["timestamp"] = out["timestamp"].astype(np.int64)
    return result


def resolve_duplicates(ratings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One rating per (userId, movieId): a pair rated several times keeps its latest rating (by
    timestamp, then by position in the file). Returns the ratings and how many rows were dropped."""
    order = ["userId", "movieId", "timestamp"] if "timestamp" in ratings.columns else ["userId", "movieId"]
    duplicated = ratings.duplicated(["userId", "movieId"], keep=False)
    if not duplicated.any():
        return ratings, 0
    latest = ratings.sort_values(order, kind="stable").drop_duplicates(["userId", "movieId"], keep="last")
    latest = latest.sort_index()
    return latest.reset_index(drop=True), int(len(ratings) - len(latest))


def read_movies(path: Path | str) -> pd.DataFrame:
    """movieId and title, from movies.csv or the latin-1 `::` movies.dat."""
    path = Path(path)
    try:
        if path.name.removesuffix(".gz") == "u.item":  # ML-100K: id|title|date|...
            return _read_titles(path, "|")
        if path.name.removesuffix(".gz").endswith(".dat"):
            return _read_titles(path, "::")
        return pd.read_csv(path, usecols=["movieId", "title"], dtype={"movieId": np.int64, "title": str})
    except (OSError, EOFError, ValueError) as exc:
        raise RatingsError(f"{path}: not a readable movies file with movieId and title ({exc})") from exc


def _read_titles(path: Path, separator: str) -> pd.DataFrame:
    """movieId and title from the first two fields of a latin-1 file without a header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="latin-1") as fh:
        rows = [line.rstrip("\n").split(separator)[:2] for line in fh if line.strip()]
    frame = pd.DataFrame(rows, columns=["movieId", "title"])
    frame["movieId"] = frame["movieId"].astype(np.int64)
    return frame
