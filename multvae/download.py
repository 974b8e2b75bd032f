"""Fetch a MovieLens release (or take a local copy), verify it, and unpack its ratings safely.

The result of every route, release, local archive, local ratings file or synthetic data, is the
same pair of Parquet files, so the prepare stage never sees where the data came from.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from multvae.atomic import atomic_dir, scratch_dir, write_json
from multvae.config import DataConfig
from multvae.errors import MultVAEError
from multvae.ratings import RatingsError, read_movies, read_ratings, resolve_duplicates
from multvae.synthetic import generate

BASE_URL = "https://files.grouplens.org/datasets/movielens"


class DownloadError(MultVAEError, RuntimeError):
    """The release cannot be fetched, verified or unpacked; the message says what to do."""


@dataclass(frozen=True)
class Release:
    """One published archive: where it is and its MD5 (None: read the published .md5 file)."""

    url: str
    md5: str | None


RELEASES: dict[str, Release] = {
    "ml-20m": Release(f"{BASE_URL}/ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": Release(f"{BASE_URL}/ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-1m": Release(f"{BASE_URL}/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
    # The "latest" archive is re-published in place, so its checksum is read from the server.
    "ml-latest-small": Release(f"{BASE_URL}/ml-latest-small.zip", None),
}

CHUNK = 1 << 20


def _offline_hint(dataset: str) -> str:
    return (
        f"set data.source to a local copy of the {dataset} archive or of its ratings file, e.g. "
        f"`dvc exp run -S data.source=/path/to/{dataset}.zip` or `data.source: ratings.csv` in params.yaml"
    )


def _open_url(url: str, dataset: str, timeout: float = 20.0):
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https or file URLs only
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason}); {_offline_hint(dataset)}") from exc


def published_md5(release: Release, dataset: str) -> str:
    if release.md5 is not None:
        return release.md5
    with _open_url(release.url + ".md5", dataset) as response:
        text = response.read().decode("ascii", "replace")
    digest = text.strip().split()[-1].lower()
    if len(digest) != 32:
        raise DownloadError(f"{release.url}.md5: unexpected content {text[:80]!r}")
    return digest


def fetch(url: str, dest: Path, dataset: str, show_progress: bool = True) -> str:
    """Stream `url` to `dest` with a progress bar; return the MD5 of what was written."""
    digest = hashlib.md5()  # noqa: S324 - the releases publish MD5 sums
    with _open_url(url, dataset) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), disable=not show_progress) as bar:
            task = bar.add_task(f"download {PurePosixPath(url).name}", total=total)
            while chunk := _read_chunk(response, url, dataset):
                out.write(chunk)
                digest.update(chunk)
                bar.advance(task, len(chunk))
    return digest.hexdigest()


def _read_chunk(response, url: str, dataset: str) -> bytes:
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: the download broke off ({exc!r}); {_offline_hint(dataset)}") from exc


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path | str, actual: str, expected: str) -> None:
    if actual != expected:
        raise DownloadError(
            f"{path}: checksum mismatch (MD5 {actual}, the release publishes {expected}); "
            "the file is corrupt, truncated or not this release"
        )


def safe_extract(archive: Path, members: list[str], target: Path) -> dict[str, Path]:
    """Extract the named members only, refusing any entry whose path would leave `target`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for name in zf.namelist():
                p = PurePosixPath(name)
                if p.is_absolute() or ".." in p.parts or name.startswith("\\") or ":" in p.parts[0]:
                    raise DownloadError(f"{archive}: refusing unsafe path {name!r} in the archive")
            out: dict[str, Path] = {}
            root = target.resolve()
            for member in members:
                if member not in names:
                    continue
                dest = (target / member).resolve()
                if root not in dest.parents:
                    raise DownloadError(f"{archive}: refusing unsafe path {member!r} in the archive")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                out[member] = dest
            return out
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as exc:
        raise DownloadError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    except OSError as exc:
        if "CRC" in str(exc) or "Bad" in str(exc):
            raise DownloadError(f"{archive}: corrupt or truncated archive ({exc})") from exc
        raise


def _find_member(archive: Path, names: tuple[str, ...]) -> str | None:
    """Locate e.g. `ratings.csv` inside an archive whatever its top folder is called."""
    try:
        with zipfile.ZipFile(archive) as zf:
            found = {PurePosixPath(n).name: n for n in zf.namelist()}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    return next((found[n] for n in names if n in found), None)


def _read_archive(archive: Path, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings_member = _find_member(archive, ("ratings.csv", "ratings.dat"))
    if ratings_member is None:
        raise DownloadError(f"{archive}: no ratings.csv or ratings.dat inside the archive")
    movies_member = _find_member(archive, ("movies.csv", "movies.dat"))
    files = safe_extract(archive, [m for m in (ratings_member, movies_member) if m], work)
    try:
        ratings = read_ratings(files[ratings_member])
    except RatingsError as exc:
        raise DownloadError(f"{archive}: {exc}") from exc
    movies = read_movies(files[movies_member]) if movies_member else _no_titles()
    return ratings, movies


def _no_titles() -> pd.DataFrame:
    return pd.DataFrame({"movieId": pd.Series(dtype="int64"), "title": pd.Series(dtype="str")})


def _sibling_movies(path: Path) -> pd.DataFrame:
    """Titles next to a plain ratings file (movies.csv or movies.dat), when there are any."""
    for name in ("movies.csv", "movies.dat", "movies.csv.gz", "movies.dat.gz"):
        candidate = path.parent / name
        if candidate.is_file():
            return read_movies(candidate)
    return _no_titles()


def materialize(data: DataConfig, out_dir: Path, show_progress: bool = True) -> dict:
    """Write `ratings.parquet`, `movies.parquet` and `source.json` into `out_dir` atomically."""
    release = RELEASES.get(data.dataset)
    info: dict = {"dataset": data.dataset}
    with atomic_dir(out_dir) as tmp, scratch_dir(out_dir) as work_dir:
        if data.dataset == "synthetic" and data.source is None:
            ratings, movies = generate(data.synthetic)
            info["generator"] = "multvae.synthetic"
        elif data.source is not None:
            source = Path(data.source).expanduser()
            if not source.exists():
                raise DownloadError(f"data.source: {source} does not exist")
            info["source"] = str(source)
            if source.suffix == ".zip":
                md5 = file_md5(source)
                info["md5"] = md5
                if release is not None and release.md5 is not None and source.name == PurePosixPath(
                        release.url).name:
                    verify(source, md5, release.md5)
                    info["verified"] = True
                ratings, movies = _read_archive(source, work_dir)
            else:
                ratings = read_ratings(source)  # a RatingsError names the file and the column
                movies = _sibling_movies(source)
        else:
            assert release is not None
            archive = work_dir / PurePosixPath(release.url).name
            expected = published_md5(release, data.dataset)
            actual = fetch(release.url, archive, data.dataset, show_progress)
            verify(release.url, actual, expected)  # `archive` is a temporary copy: name the URL
            info.update(url=release.url, md5=actual, verified=True)
            ratings, movies = _read_archive(archive, work_dir)
        ratings, dropped = resolve_duplicates(ratings)
        info["duplicate_ratings_dropped"] = dropped
        if ratings.empty:
            raise DownloadError(f"{info.get('source', info.get('url', data.dataset))}: no ratings")
        ratings.to_parquet(tmp / "ratings.parquet", index=False)
        movies.to_parquet(tmp / "movies.parquet", index=False)
        info.update(ratings=len(ratings), users=int(ratings["userId"].nunique()),
                    movies=int(ratings["movieId"].nunique()),
                    has_timestamps="timestamp" in ratings.columns)
        write_json(tmp / "source.json", info)
    return info
