"""Fetch a MovieLens release (or take a local copy), verify it, and unpack its ratings safely.

The result of every route, release, local archive, local ratings file or synthetic data, is the
same pair of Parquet files, so the prepare stage never sees where the data came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from multvae.atomic import atomic_dir, scratch_dir, write_json
from multvae.config import DataConfig
from multvae.errors import MultVAEError
from multvae.identity import content, label
from multvae.ratings import RatingsError, read_interactions, read_movies, read_ratings, resolve_duplicates
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
    # The checksums of these are read from the .md5 file GroupLens publishes beside each archive
    # (the "latest" ones are re-published in place); a local copy is identified by its content.
    "ml-100k": Release(f"{BASE_URL}/ml-100k.zip", None),
    "ml-10m": Release(f"{BASE_URL}/ml-10m.zip", None),
    "ml-32m": Release(f"{BASE_URL}/ml-32m.zip", None),
    "ml-latest": Release(f"{BASE_URL}/ml-latest.zip", None),
    "ml-latest-small": Release(f"{BASE_URL}/ml-latest-small.zip", None),
}
RATINGS_MEMBERS = ("ratings.csv", "ratings.dat", "u.data")
MOVIES_MEMBERS = ("movies.csv", "movies.dat", "u.item")

CHUNK = 1 << 20


def _offline_hint(dataset: str) -> str:
    return (
        f"set data.source to a local copy of the {dataset} archive or of its ratings file, e.g. "
        f"`dvc exp run -S data.source=/path/to/{dataset}.zip`; or run the default study, which needs "
        "no network (`dvc exp run -S study=default`: ml-latest-small, shipped in data/)"
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


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in chunks (archives can be hundreds of MB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")  # the releases publish MD5 sums


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
    ratings_member = _find_member(archive, RATINGS_MEMBERS)
    if ratings_member is None:
        raise DownloadError(f"{archive}: no ratings file inside the archive; expected one of "
                            f"{', '.join(RATINGS_MEMBERS)} (the MovieLens releases' layouts)")
    movies_member = _find_member(archive, MOVIES_MEMBERS)
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
    for name in (*MOVIES_MEMBERS, "movies.csv.gz", "movies.dat.gz"):
        candidate = path.parent / name
        if candidate.is_file():
            return read_movies(candidate)
    return _no_titles()


def resolve_source(source: str, cwd: Path | None = None) -> Path:
    """data.source as a path. A relative one is taken from the project root; inside an experiment
    that DVC runs in a temporary copy (`dvc exp run --temp/--queue`, under <repo>/.dvc/tmp/exps/),
    from the repository the experiment was started in, where the file really is."""
    path = Path(source).expanduser()
    cwd = (cwd or Path.cwd()).resolve()
    tried = [cwd / path]  # an absolute path stays itself
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            tried.append(Path(*parts[:i]) / path)
    found = next((p for p in tried if p.exists()), None)
    if found is None:
        raise DownloadError(f"data.source: {source} does not exist (looked at {', '.join(map(str, tried))})")
    if not found.is_file():
        raise DownloadError(f"data.source: {found} is a folder or device, not a file; give the release's "
                            "archive (.zip) or a ratings file (.csv, .tsv, .dat, u.data, optionally .gz)")
    return found


def _input_key(data: DataConfig, source: Path | None) -> dict[str, Any]:
    """Everything the download stage's output depends on: when it equals what source.json recorded,
    the output is current and nothing is rewritten. A local file counts by its bytes (SHA-256) and
    is named as params.yaml names it, not by where this checkout lies: two clones in other folders
    then write the same data/raw, so DVC's hashes and run-cache agree between them."""
    key: dict[str, Any] = {"dataset": data.dataset}
    if source is not None:
        key.update(source=data.source, sha256=file_digest(source, "sha256"), size=source.stat().st_size)
    elif data.dataset == "synthetic":
        key["synthetic"] = dataclasses.asdict(data.synthetic)
    else:
        key["url"] = RELEASES[data.dataset].url
    return key


def current(out_dir: Path, key: dict[str, Any]) -> dict | None:
    """source.json of out_dir when it already holds the output of exactly this input, else None."""
    if not all((out_dir / name).is_file() for name in ("ratings.parquet", "movies.parquet", "source.json")):
        return None
    try:
        record = json.loads((out_dir / "source.json").read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("input") == key else None


def materialize(data: DataConfig, out_dir: Path, show_progress: bool = True) -> tuple[dict, bool]:
    """Write `ratings.parquet`, `movies.parquet` and `source.json` into `out_dir` atomically, unless
    it already holds them for the same input; returns source.json's content and whether it wrote."""
    source = resolve_source(data.source) if data.source is not None else None
    if data.source is None and data.dataset == "auto":
        raise DownloadError("data.dataset: auto labels a local file by its content; set data.source too")
    key = _input_key(data, source)
    if (record := current(out_dir, key)) is not None:
        return record, False
    release = RELEASES.get(data.dataset)
    info: dict[str, Any] = {"input": key}
    claimed: str | None = None if data.dataset in ("auto", "synthetic") else data.dataset
    with atomic_dir(out_dir, "ratings.parquet") as tmp, scratch_dir(out_dir) as work_dir:
        if source is not None:
            name = source.name
            by_name = next((n for n, r in RELEASES.items() if PurePosixPath(r.url).name == name), None)
            if by_name is not None and claimed is not None and by_name != claimed:
                raise DownloadError(f"data.source: {source} is named like the {by_name} archive but "
                                    f"data.dataset is {claimed}; set data.dataset to the release it is")
            claimed = claimed or by_name
            if source.suffix == ".zip":
                known = RELEASES.get(claimed or "")
                if known is not None and known.md5 is not None and name == PurePosixPath(known.url).name:
                    verify(source, file_md5(source), known.md5)
                    info["md5_verified"] = True
                ratings, movies = _read_archive(source, work_dir)
            else:
                # a RatingsError names the file and the column
                ratings, labels = read_interactions(source)
                movies = _sibling_movies(source) if labels is None else labels
                if labels is not None:
                    info["ids"] = "labels renumbered in sorted order; items' labels are the titles"
        elif data.dataset == "synthetic":
            ratings, movies = generate(data.synthetic)
            info["generator"] = "multvae.synthetic"
        else:
            assert release is not None
            name = PurePosixPath(release.url).name
            archive = work_dir / name
            expected = published_md5(release, data.dataset)
            actual = fetch(release.url, archive, data.dataset, show_progress)
            verify(release.url, actual, expected)  # `archive` is a temporary copy: name the URL
            info.update(md5=actual, md5_verified=True)
            ratings, movies = _read_archive(archive, work_dir)
        rows = len(ratings)
        ratings, dropped = resolve_duplicates(ratings)
        if ratings.empty:
            raise DownloadError(f"{source or data.dataset}: no ratings")
        found = content(ratings)
        dataset = "synthetic" if source is None and data.dataset == "synthetic" else label(
            found, claimed, name, str(source) if source is not None else name)
        info = {"dataset": dataset, **info, "rows": rows, "duplicate_ratings_dropped": dropped,
                "ratings": found.ratings, "users": found.users, "movies": found.movies,
                "content_sha256": found.sha256, "has_timestamps": "timestamp" in ratings.columns}
        ratings.to_parquet(tmp / "ratings.parquet", index=False)
        movies.to_parquet(tmp / "movies.parquet", index=False)
        write_json(tmp / "source.json", info)
    return info, True
