"""The prepared split as sparse matrices: what training, evaluation and the baselines consume."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from multvae.errors import MultVAEError


class DataError(MultVAEError, FileNotFoundError):
    """The prepared data is missing or incomplete; the message says which stage to run."""


@dataclass
class HeldOut:
    """Fold-in and target rows of the same users, row i of each belonging to user `users[i]`."""

    users: np.ndarray  # global user index (users.parquet `user`)
    foldin: sp.csr_matrix
    target: sp.csr_matrix


@dataclass
class Dataset:
    train: sp.csr_matrix  # training users x items, binary float32
    validation: HeldOut
    test: HeldOut
    items: pd.DataFrame  # item, movieId, title
    users: pd.DataFrame  # user, userId, role
    fingerprint: str  # of the prepared tables' content (manifest.json)

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    @property
    def movie_ids(self) -> np.ndarray:
        """movieId of each item column."""
        return self.items["movieId"].to_numpy()

    def user_ids(self, users: np.ndarray) -> np.ndarray:
        """The userId of each of `users` (indices of users.parquet): the key that stays the same
        in every fold, so results of different folds and systems pair up by user."""
        table = self.users["userId"].to_numpy()
        return table[np.searchsorted(self.users["user"].to_numpy(), users)]


MANIFEST = "manifest.json"
ROLES = ("train", "validation", "test")


def fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """SHA-256 (first 16 hex digits) of what defines a split: every (user, item) pair of every table,
    the users' ids and roles, and the movie id of every item. Titles are left out: they change no
    result. Two splits with the same item count but other items or users differ here."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        digest.update(name.encode())
        for column in sorted(frame.columns):
            if column == "title":
                continue
            values = frame[column]
            array = (values.map(ROLES.index) if column == "role" else values).to_numpy(np.int64)
            digest.update(column.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def read_raw(raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, movies) as the download stage wrote them into `raw_dir`."""
    frames = [_read_raw(Path(raw_dir) / name) for name in ("ratings.parquet", "movies.parquet")]
    # Arrow's allocator keeps the decoded Parquet buffers (about 0.6 GB at ML-20M) after the
    # conversion to pandas; hand them back before the split, which is where the peak is.
    pa.default_memory_pool().release_unused()
    return frames[0], frames[1]


def _json_object(path: Path, stage: str) -> dict:
    """A JSON object a stage wrote; anything else is a DataError that says to rerun `stage`."""
    if not path.is_file():
        raise DataError(f"{path} not found: run the {stage} stage first (`dvc repro {stage}`)")
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); run `dvc repro -f {stage}`") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object; run `dvc repro -f {stage}`")
    return value


def read_stats(path: Path) -> dict:
    """The split's statistics written by the prepare stage (data/stats.json)."""
    return _json_object(Path(path), "prepare")


def read_source_info(raw_dir: Path) -> dict:
    """What the download stage recorded about the source (source.json), or {} without it."""
    path = Path(raw_dir) / "source.json"
    return _json_object(path, "download") if path.is_file() else {}


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path} not found: run the download stage first (`dvc repro download`)")
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); run the download stage again "
                        "(`dvc repro -f download`)") from exc


def read_fingerprint(data_dir: Path | str) -> str:
    """The fingerprint the prepare stage recorded for the split in `data_dir`."""
    path = Path(data_dir) / MANIFEST
    manifest = _json_object(path, "prepare")
    if "fingerprint" not in manifest:
        raise DataError(f"{path}: not a manifest written by the prepare stage (no fingerprint); "
                        "run `dvc repro -f prepare`")
    return str(manifest["fingerprint"])


def read_table(data_dir: Path, name: str, **kwargs: Any) -> pd.DataFrame:
    """One table of a prepared split; a missing or damaged one says to rerun prepare."""
    path = data_dir / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    try:
        return pd.read_parquet(path, **kwargs)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); run `dvc repro -f prepare`") from None


def _csr(frame: pd.DataFrame, rows: np.ndarray, n_items: int) -> sp.csr_matrix:
    row = np.searchsorted(rows, frame["user"].to_numpy())
    data = np.ones(len(frame), dtype=np.float32)
    m = sp.csr_matrix((data, (row, frame["item"].to_numpy())), shape=(rows.size, n_items))
    m.sum_duplicates()
    return m


def _heldout(data_dir: Path, role: str, n_items: int) -> HeldOut:
    foldin, target = read_table(data_dir, f"{role}_foldin"), read_table(data_dir, f"{role}_target")
    users = np.unique(target["user"].to_numpy())
    foldin = foldin.loc[np.isin(foldin["user"].to_numpy(), users)]
    return HeldOut(users=users, foldin=_csr(foldin, users, n_items), target=_csr(target, users, n_items))


def load_dataset(data_dir: Path | str) -> Dataset:
    """One fold's prepared split (data/prepared/fold-<k>)."""
    data_dir = Path(data_dir)
    folds = sorted(p.name for p in data_dir.glob("fold-*") if p.is_dir())
    if folds and not (data_dir / "items.parquet").exists():
        raise DataError(f"{data_dir} holds the prepared folds ({', '.join(folds)}), not one split; "
                        f"give one of them, such as {data_dir / folds[0]}")
    items = read_table(data_dir, "items")
    users = read_table(data_dir, "users")
    n_items = len(items)
    train = read_table(data_dir, "train")
    train_users = np.unique(train["user"].to_numpy())
    return Dataset(
        train=_csr(train, train_users, n_items),
        validation=_heldout(data_dir, "validation", n_items),
        test=_heldout(data_dir, "test", n_items),
        items=items,
        users=users,
        fingerprint=read_fingerprint(data_dir),
    )
