"""The prepared split as sparse matrices: what training, evaluation and the baselines consume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multvae.atomic import atomic_dir, write_json
from multvae.split import Split


class DataError(FileNotFoundError):
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

    @property
    def n_items(self) -> int:
        return self.train.shape[1]


def write_split(result: Split, out_dir: Path, stats_path: Path) -> None:
    """All tables into `out_dir`, replaced as a whole only once all are written; then the stats."""
    with atomic_dir(out_dir) as tmp:
        for name in Split.TABLES:
            getattr(result, name).to_parquet(tmp / f"{name}.parquet", index=False)
    write_json(stats_path, result.stats)


def _read(data_dir: Path, name: str) -> pd.DataFrame:
    path = data_dir / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    return pd.read_parquet(path)


def _csr(frame: pd.DataFrame, rows: np.ndarray, n_items: int) -> sp.csr_matrix:
    row = np.searchsorted(rows, frame["user"].to_numpy())
    data = np.ones(len(frame), dtype=np.float32)
    m = sp.csr_matrix((data, (row, frame["item"].to_numpy())), shape=(rows.size, n_items))
    m.sum_duplicates()
    return m


def _heldout(data_dir: Path, role: str, n_items: int) -> HeldOut:
    foldin, target = _read(data_dir, f"{role}_foldin"), _read(data_dir, f"{role}_target")
    users = np.unique(target["user"].to_numpy())
    foldin = foldin.loc[np.isin(foldin["user"].to_numpy(), users)]
    return HeldOut(users=users, foldin=_csr(foldin, users, n_items), target=_csr(target, users, n_items))


def load_dataset(data_dir: Path | str) -> Dataset:
    data_dir = Path(data_dir)
    items = _read(data_dir, "items")
    users = _read(data_dir, "users")
    n_items = len(items)
    train = _read(data_dir, "train")
    train_users = np.unique(train["user"].to_numpy())
    return Dataset(
        train=_csr(train, train_users, n_items),
        validation=_heldout(data_dir, "validation", n_items),
        test=_heldout(data_dir, "test", n_items),
        items=items,
        users=users,
    )
