"""The prepared folds a scoring stage reads, each checked before anything is scored: the cut-offs fit
its items and both held-out sets have users (an empty one would score as a mean over nobody)."""

from __future__ import annotations

from pathlib import Path

from multvae.data import DataError, Dataset, load_dataset
from multvae.layout import fold_dir
from multvae.metrics import check_cutoffs


def load_folds(data: Path, folds: tuple[int, ...], ks: tuple[int, ...]) -> dict[int, Dataset]:
    """Fold k's split from data/prepared/fold-<k>, for each k of `folds`."""
    datasets = {}
    for fold in folds:
        where = fold_dir(data, fold)
        dataset = datasets[fold] = load_dataset(where)
        check_cutoffs(ks, dataset.n_items, str(where))
        for role, heldout in (("validation", dataset.validation), ("test", dataset.test)):
            if heldout.users.size == 0:
                raise DataError(f"{where}: the {role} split has no users; check data.heldout_users")
    return datasets


def fingerprints(folds: dict[int, Dataset]) -> dict[int, str]:
    """Each fold's split fingerprint: what a result records and a hand-over is checked against."""
    return {fold: dataset.fingerprint for fold, dataset in folds.items()}
