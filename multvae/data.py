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


def read_manifest(data_dir: Path | str) -> dict[str, Any]:
    """What the prepare stage recorded of the split in `data_dir`: its fingerprint and table rows."""
    path = Path(data_dir) / MANIFEST
    manifest = _json_object(path, "prepare")
    if not isinstance(manifest.get("fingerprint"), str) or not isinstance(manifest.get("rows"), dict):
        raise DataError(f"{path}: not a manifest written by the prepare stage (no fingerprint or row "
                        "counts); run `dvc repro -f prepare`")
    return manifest


def _check_split(data_dir: Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> None:
    """The tables are those the manifest describes (fingerprint and row counts recomputed), and no
    held-out user's target repeats an item of their fold-in: a table replaced or edited behind the
    prepare stage's back stops here, by name, instead of giving other results under the same name."""
    for name, frame in tables.items():
        if manifest["rows"].get(name) != len(frame):
            raise DataError(f"{data_dir / (name + '.parquet')}: {len(frame):,} rows, the manifest says "
                            f"{manifest['rows'].get(name)}; the split was changed after the prepare stage: "
                            "run `dvc repro -f prepare`")
    found = fingerprint(tables)
    if found != manifest["fingerprint"]:
        raise DataError(f"{data_dir}: its tables' fingerprint is {found}, the manifest says "
                        f"{manifest['fingerprint']}; the split was changed after the prepare stage: run "
                        "`dvc repro -f prepare`")
    for role in ("validation", "test"):
        keys = [tables[f"{role}_{part}"][["user", "item"]] for part in ("foldin", "target")]
        both = keys[0].merge(keys[1], on=["user", "item"])
        if len(both):
            user, item = int(both["user"].iloc[0]), int(both["item"].iloc[0])
            raise DataError(f"{data_dir}: user {user} has item {item} in both the {role} fold-in and target; "
                            "run `dvc repro -f prepare`")


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


def _heldout(tables: dict[str, pd.DataFrame], role: str, n_items: int) -> HeldOut:
    foldin, target = tables[f"{role}_foldin"], tables[f"{role}_target"]
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
    manifest = read_manifest(data_dir)
    tables = {name: read_table(data_dir, name) for name in manifest["rows"]}
    if set(tables) != {"users", "items", "train", *(f"{r}_{p}" for r in ("validation", "test")
                                                    for p in ("foldin", "target"))}:
        raise DataError(f"{data_dir / MANIFEST}: lists tables {sorted(tables)}, not a split's; run "
                        "`dvc repro -f prepare`")
    _check_split(data_dir, tables, manifest)
    items, train = tables["items"], tables["train"]
    n_items = len(items)
    for name, frame in tables.items():
        if name not in ("users", "items") and len(frame) and not frame["item"].between(0, n_items - 1).all():
            raise DataError(f"{data_dir / (name + '.parquet')}: item indices outside 0..{n_items - 1}; run "
                            "`dvc repro -f prepare`")
    train_users = np.unique(train["user"].to_numpy())
    return Dataset(
        train=_csr(train, train_users, n_items),
        validation=_heldout(tables, "validation", n_items),
        test=_heldout(tables, "test", n_items),
        items=items,
        users=tables["users"],
        fingerprint=manifest["fingerprint"],
    )
