"""Binarize ratings and split them by one of the two evaluation protocols.

Both protocols produce the same tables, so training and evaluation do not care which was used:
`train` (user, item) pairs, and for validation and test a fold-in part (what the model sees
for the user) and a target part (what it must rank highly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from multvae.atomic import published
from multvae.config import DataConfig
from multvae.data import MANIFEST, fingerprint
from multvae.errors import MultVAEError
from multvae.layout import fold_dir
from multvae.sealed import seal


class SplitError(MultVAEError, ValueError):
    """The ratings cannot be split as asked; the message names the parameter."""


@dataclass
class Split:
    users: pd.DataFrame  # user, userId, role (train | validation | test)
    items: pd.DataFrame  # item, movieId, title
    train: pd.DataFrame  # user, item
    validation_foldin: pd.DataFrame
    validation_target: pd.DataFrame
    test_foldin: pd.DataFrame
    test_target: pd.DataFrame
    stats: dict

    TABLES = ("users", "items", "train", "validation_foldin", "validation_target",
              "test_foldin", "test_target")


def binarize(ratings: pd.DataFrame, min_rating: float, min_user_positives: int) -> pd.DataFrame:
    """Positives (rating >= min_rating) of users with at least `min_user_positives` of them,
    sorted by (userId, movieId) so that every later random draw is order-independent.
    The download stage already keeps one rating per pair (its latest); a pair that still repeats
    counts once, with the columns of its first row."""
    rows = np.flatnonzero(ratings["rating"].to_numpy() >= min_rating)
    if rows.size:
        user, movie = ratings["userId"].to_numpy()[rows], ratings["movieId"].to_numpy()[rows]
        order = _argsort_by(user, movie)
        user, movie = user[order], movie[order]
        first = np.r_[True, (user[1:] != user[:-1]) | (movie[1:] != movie[:-1])]
        order, user = order[first], user[first]
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
        sizes = np.diff(np.r_[starts, user.size])
        rows = rows[order[np.repeat(sizes >= min_user_positives, sizes)]]
        del user, movie, order, first
    # Column by column: one copy of the kept rows, not of every positive first.
    return pd.DataFrame({c: ratings[c].to_numpy()[rows] for c in ratings.columns if c != "rating"})


def _argsort_by(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Stable order of rows by (major, minor): one int64 key sort when the ranges allow, else lexsort."""
    lo_major, lo_minor = int(major.min()), int(minor.min())
    span = int(minor.max()) - lo_minor + 1
    if (int(major.max()) - lo_major + 1) * span >= 2**62:
        return np.lexsort((minor, major))
    key = major.astype(np.int64)  # in place from here: this runs on every positive of ML-20M
    key -= lo_major
    key *= span
    key += minor
    key -= lo_minor
    return np.argsort(key, kind="stable")


def _user_rows(user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by userId: the distinct ids (sorted) and each row's position in them."""
    new = np.r_[True, user_ids[1:] != user_ids[:-1]]
    return user_ids[new], np.cumsum(new, dtype=np.int32) - 1


def _rank_within_user(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows grouped by user: each row's position within its user, and its user's row count."""
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    sizes = np.diff(np.r_[starts, user.size])
    size = np.repeat(sizes, sizes)
    rank = np.arange(user.size) - np.repeat(starts, sizes)
    return rank, size


def _item_codes(movie_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position in the sorted `item_ids`, and whether its movie is there at all."""
    item = np.searchsorted(item_ids, movie_ids).astype(np.int32)
    known = item_ids[np.minimum(item, item_ids.size - 1)] == movie_ids
    return item, known


def _heldout_count(data: DataConfig, n_users: int, n_test: int | None = None) -> int:
    """Validation users; as many test users too, unless the fold fixes `n_test`."""
    requested = data.heldout_users
    n = data.heldout_count(n_users)
    if n_test is None and n_users < 3:
        raise SplitError(
            f"only {n_users} user(s) have >= {data.min_user_positives} positives; a split needs at least 3 "
            "(training, validation and test); lower data.min_user_positives or give more ratings")
    if n_test is None and (n < 1 or 2 * n >= n_users):
        most = (n_users - 1) // 2  # the largest count that leaves a training user
        raise SplitError(
            f"data.heldout_users={requested:g} asks for {n} validation and {n} test users, but only "
            f"{n_users} users have >= {data.min_user_positives} positives and at least one must "
            f"be left for training; use a count from 1 to {most}"
        )
    if n_test is not None and (n < 1 or n + n_test >= n_users):
        raise SplitError(
            f"data.heldout_users={requested:g} asks for {n} validation users, but with data.kfold="
            f"{data.kfold} a fold holds {n_test} of the {n_users} users as test users and at least one "
            f"must be left for training; use fewer validation users or more folds"
        )
    return n


def _assign_roles(data: DataConfig, n_users: int, fold: int) -> tuple[np.ndarray, np.random.Generator]:
    """Each user's role (0 train, 1 validation, 2 test) in `fold`, and the generator for the
    fold-in/target draw that follows.

    kfold 1 (the paper): a random heldout_users users validate and as many test.
    kfold K >= 2: one seeded permutation deals the users into K folds of near-equal size, so every
    user is a test user in exactly one fold; each fold draws its validation users from the others.
    """
    rng = np.random.default_rng(data.seed)
    perm = rng.permutation(n_users)
    role = np.zeros(n_users, dtype=np.int8)
    if data.kfold == 1:
        n = _heldout_count(data, n_users)
        role[perm[:n]], role[perm[n:2 * n]] = 1, 2
        return role, rng
    if data.kfold > n_users // 2:
        raise SplitError(f"data.kfold={data.kfold} deals {n_users} users into folds of fewer than 2 test "
                         f"users; use at most {n_users // 2} folds")
    fold_of = np.empty(n_users, dtype=np.int64)
    fold_of[perm] = np.arange(n_users) % data.kfold
    role[fold_of == fold] = 2
    n = _heldout_count(data, n_users, int((role == 2).sum()))
    fold_rng = np.random.default_rng([data.seed, fold])
    role[fold_rng.choice(np.flatnonzero(role == 0), size=n, replace=False)] = 1
    return role, fold_rng


def _index_frames(item_ids: np.ndarray, titles: pd.DataFrame,
                  roles: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    user_ids = np.concatenate([roles["train"], roles["validation"], roles["test"]])
    role = np.repeat(["train", "validation", "test"],
                     [len(roles["train"]), len(roles["validation"]), len(roles["test"])])
    users = pd.DataFrame({"userId": user_ids, "role": role}).sort_values("userId", kind="stable")
    users.insert(0, "user", np.arange(len(users), dtype=np.int32))
    items = pd.DataFrame({"item": np.arange(item_ids.size, dtype=np.int32), "movieId": item_ids})
    items = items.merge(titles.drop_duplicates("movieId"), on="movieId", how="left")
    items["title"] = items["title"].fillna("")
    return users.reset_index(drop=True), items


def _encode(rows: np.ndarray, user_row: np.ndarray, user_index: np.ndarray,
            item: np.ndarray) -> pd.DataFrame:
    """The selected rows of the (userId, movieId)-sorted positives as dense (user, item) int32
    indices; both indices keep the ids' order, so the result is sorted by user then item."""
    return pd.DataFrame({"user": user_index[user_row[rows]], "item": item[rows]})


def split_heldout_users(pos: pd.DataFrame, data: DataConfig, titles: pd.DataFrame, fold: int = 0) -> Split:
    """Liang et al.'s strong generalization: held-out users, their items split fold-in/target."""
    all_users, user_row = _user_rows(pos["userId"].to_numpy())
    role_of_user, rng = _assign_roles(data, all_users.size, fold)
    n = int((role_of_user == 1).sum())
    role = role_of_user[user_row]

    movie_ids = pos["movieId"].to_numpy()
    item_ids = np.sort(pd.unique(movie_ids[role == 0]))
    item, known = _item_codes(movie_ids, item_ids)

    # A held-out user's items in a random order; the first target_fraction of them are targets.
    heldout = np.flatnonzero((role > 0) & known)
    order = np.lexsort((rng.random(heldout.size), user_row[heldout]))
    rank, size = _rank_within_user(user_row[heldout[order]])
    n_target = np.maximum(1, np.floor(data.target_fraction * size)).astype(np.int64)
    is_target, enough = np.empty(heldout.size, dtype=bool), np.empty(heldout.size, dtype=bool)
    is_target[order], enough[order] = rank < n_target, size >= 2
    heldout, is_target = heldout[enough], is_target[enough]

    kept = np.zeros(all_users.size, dtype=bool)
    kept[user_row[heldout]] = True
    dropped = {"validation": int(((role_of_user == 1) & ~kept).sum()),
               "test": int(((role_of_user == 2) & ~kept).sum())}
    roles = {"train": all_users[role_of_user == 0], "validation": all_users[(role_of_user == 1) & kept],
             "test": all_users[(role_of_user == 2) & kept]}
    users, items = _index_frames(item_ids, titles, roles)
    user_index = np.searchsorted(users["userId"].to_numpy(), all_users).astype(np.int32)
    in_val = role[heldout] == 1
    parts = {
        "train": np.flatnonzero(role == 0),
        "validation_foldin": heldout[in_val & ~is_target],
        "validation_target": heldout[in_val & is_target],
        "test_foldin": heldout[~in_val & ~is_target],
        "test_target": heldout[~in_val & is_target],
    }
    encoded = {name: _encode(rows, user_row, user_index, item) for name, rows in parts.items()}
    extra = {"heldout_users_requested": n, "heldout_users_dropped": dropped,
             "heldout_items_outside_train": int(((role > 0) & ~known).sum())}
    return Split(users=users, items=items, stats=_stats(pos, users, items, encoded, data, extra), **encoded)


def split_temporal(pos: pd.DataFrame, data: DataConfig, titles: pd.DataFrame) -> Split:
    """Each user's positives in time order: first 80% train, next 10% validation, last 10% test.
    Users with fewer than 3 positives keep them all for training (nothing would be left to fold in)."""
    if "timestamp" not in pos.columns:
        raise SplitError(
            "data.split=temporal needs timestamps, but the ratings have no timestamp column; "
            "use data.split: heldout_users, or a release with timestamps"
        )
    all_users, user_row = _user_rows(pos["userId"].to_numpy())
    # Time order within each user (ties by movieId, the order of `pos`).
    order = _argsort_by(user_row, pos["timestamp"].to_numpy())
    rank, size = _rank_within_user(user_row[order])
    holdout = np.where(size >= 3, np.maximum(1, np.round(0.1 * size)), 0).astype(np.int64)
    n_train = size - 2 * holdout
    phase = np.empty(len(pos), dtype=np.int8)
    phase[order] = np.where(rank < n_train, 0, np.where(rank < n_train + holdout, 1, 2))
    del order, rank, size, holdout, n_train

    movie_ids = pos["movieId"].to_numpy()
    train = phase == 0
    item_ids = np.sort(pd.unique(movie_ids[train]))
    item, known = _item_codes(movie_ids, item_ids)
    val_target = (phase == 1) & known
    test_target = (phase == 2) & known
    has_val, has_test = np.zeros(all_users.size, dtype=bool), np.zeros(all_users.size, dtype=bool)
    has_val[user_row[val_target]] = True
    has_test[user_row[test_target]] = True
    roles = {"train": all_users, "validation": all_users[:0], "test": all_users[:0]}
    users, items = _index_frames(item_ids, titles, roles)
    user_index = np.searchsorted(users["userId"].to_numpy(), all_users).astype(np.int32)
    parts = {
        "train": np.flatnonzero(train),
        "validation_foldin": np.flatnonzero(train & has_val[user_row]),
        "validation_target": np.flatnonzero(val_target),
        "test_foldin": np.flatnonzero((phase <= 1) & known & has_test[user_row]),
        "test_target": np.flatnonzero(test_target),
    }
    encoded = {name: _encode(rows, user_row, user_index, item) for name, rows in parts.items()}
    extra = {"target_items_outside_train": int(((phase > 0) & ~known).sum()),
             "validation_users_without_target": int(all_users.size - has_val.sum()),
             "test_users_without_target": int(all_users.size - has_test.sum())}
    return Split(users=users, items=items, stats=_stats(pos, users, items, encoded, data, extra), **encoded)


def _stats(pos: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
           parts: dict[str, pd.DataFrame], data: DataConfig, extra: dict) -> dict:
    stats: dict = {
        "split": data.split,
        "min_rating": data.min_rating,
        "min_user_positives": data.min_user_positives,
        "seed": data.seed,
        "positives": int(len(pos)),
        "users_kept": int(pos["userId"].nunique()),
        "items": int(len(items)),
        "train_users": int(parts["train"]["user"].nunique()),
        "validation_users": int(parts["validation_target"]["user"].nunique()),
        "test_users": int(parts["test_target"]["user"].nunique()),
    }
    stats.update({f"{name}_positives": int(len(frame)) for name, frame in parts.items()})
    stats["train_density"] = round(len(parts["train"]) / max(stats["train_users"] * len(items), 1), 6)
    # |x_u| over training users: what β = γ·|x_u| spreads over (the β figure draws its band)
    counts = parts["train"].groupby("user").size().to_numpy()
    stats["train_user_positives"] = {name: float(np.percentile(counts, q)) if counts.size else 0.0
                                     for name, q in (("p10", 10), ("p50", 50), ("p90", 90))}
    stats.update(extra)
    return stats


def split(ratings: pd.DataFrame, data: DataConfig, titles: pd.DataFrame) -> dict[int, Split]:
    """One split per fold of data.folds (the single held-out split when data.kfold is 1)."""
    pos = binarize(ratings, data.min_rating, data.min_user_positives)
    if pos.empty:
        raise SplitError(
            f"no user has >= {data.min_user_positives} ratings >= {data.min_rating} "
            "(data.min_rating, data.min_user_positives): nothing is left to train on"
        )
    if data.split == "temporal":
        folds = {0: split_temporal(pos, data, titles)}
    else:
        folds = {fold: split_heldout_users(pos, data, titles, fold) for fold in data.folds}
    for result in folds.values():
        result.stats.update(ratings=int(len(ratings)), kfold=data.kfold)
    return folds


def write_split(folds: dict[int, Split], out_dir: Path, stats_path: Path, extra: dict | None = None) -> None:
    """Every fold's tables into `out_dir`/fold-<k> with a manifest (the split's fingerprint and each
    table's rows), and the statistics (`extra` and the kfold at the top, each fold's counts and
    fingerprint under `folds`): published together, so the two never describe different splits."""
    prints = {}
    with published() as out:
        tmp = out.folder(out_dir, "fold-*|*.parquet")  # this layout, or the one-split layout before it
        for fold, result in folds.items():
            tables = {name: getattr(result, name) for name in Split.TABLES}
            where = fold_dir(tmp, fold)
            where.mkdir()
            for name, frame in tables.items():
                frame.to_parquet(where / f"{name}.parquet", index=False)
            prints[fold] = fingerprint(tables)
            (where / MANIFEST).write_text(json.dumps(
                {"fingerprint": prints[fold], "rows": {name: len(frame) for name, frame in tables.items()}},
                indent=2) + "\n")
        stats = fold_stats(folds, extra)
        for fold, value in prints.items():
            stats["folds"][str(fold)]["fingerprint"] = value
        out.file(stats_path).write_text(json.dumps(seal(stats), indent=2) + "\n")


def fold_stats(folds: dict[int, Split], extra: dict | None = None) -> dict:
    """The statistics file's content: what all folds share at the top, each fold's counts by fold."""
    names = ("split", "min_rating", "min_user_positives", "seed", "kfold", "ratings", "positives",
             "users_kept")
    first = next(iter(folds.values())).stats
    return {**(extra or {}), **{k: first[k] for k in names if k in first},
            "test_users_all_folds": sum(r.stats["test_users"] for r in folds.values()),
            "folds": {str(fold): {k: v for k, v in r.stats.items() if k not in names}
                      for fold, r in folds.items()}}
