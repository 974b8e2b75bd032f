"""Binarize ratings and split them by one of the two evaluation protocols.

Both protocols produce the same tables, so training and evaluation do not care which was used:
`train` (user, item) pairs, and for validation and test a fold-in part (what the model sees
for the user) and a target part (what it must rank highly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multvae.config import DataConfig


class SplitError(ValueError):
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
    sorted by (userId, movieId) so that every later random draw is order-independent."""
    pos = ratings.loc[ratings["rating"].to_numpy() >= min_rating]
    pos = pos.drop(columns="rating").drop_duplicates(["userId", "movieId"])
    counts = pos["userId"].map(pos["userId"].value_counts())
    pos = pos.loc[counts.to_numpy() >= min_user_positives]
    return pos.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)


def _rank_within_user(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows grouped by user: each row's position within its user, and its user's row count."""
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    sizes = np.diff(np.r_[starts, user.size])
    size = np.repeat(sizes, sizes)
    rank = np.arange(user.size) - np.repeat(starts, sizes)
    return rank, size


def _heldout_count(data: DataConfig, n_users: int) -> int:
    requested = data.heldout_users
    n = int(round(requested * n_users)) if requested < 1 else int(requested)
    if n < 1 or 2 * n >= n_users:
        raise SplitError(
            f"data.heldout_users={requested:g} asks for {n} validation and {n} test users, but only "
            f"{n_users} users have >= {data.min_user_positives} positives and at least one must "
            f"be left for training; use a count below {max(n_users // 2, 1)} or a fraction such as 0.1"
        )
    return n


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


def _encode(frame: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """(userId, movieId) pairs as dense (user, item) int32 indices, sorted by user then item."""
    user = np.searchsorted(users["userId"].to_numpy(), frame["userId"].to_numpy()).astype(np.int32)
    item = np.searchsorted(items["movieId"].to_numpy(), frame["movieId"].to_numpy()).astype(np.int32)
    out = pd.DataFrame({"user": user, "item": item})
    return out.sort_values(["user", "item"], kind="stable").reset_index(drop=True)


def split_heldout_users(pos: pd.DataFrame, data: DataConfig, titles: pd.DataFrame) -> Split:
    """Liang et al.'s strong generalization: held-out users, their items split fold-in/target."""
    rng = np.random.default_rng(data.seed)
    all_users = pos["userId"].unique()
    n = _heldout_count(data, all_users.size)
    perm = all_users[rng.permutation(all_users.size)]
    val_ids, test_ids, train_ids = np.sort(perm[:n]), np.sort(perm[n:2 * n]), np.sort(perm[2 * n:])

    uid = pos["userId"].to_numpy()
    train_pos = pos.loc[np.isin(uid, train_ids)]
    item_ids = np.sort(train_pos["movieId"].unique())

    heldout = pos.loc[~np.isin(uid, train_ids) & np.isin(pos["movieId"].to_numpy(), item_ids)]
    heldout = heldout.assign(_key=rng.random(len(heldout)))
    heldout = heldout.sort_values(["userId", "_key"], kind="stable")
    rank, size = _rank_within_user(heldout["userId"].to_numpy())
    enough = size >= 2
    n_target = np.maximum(1, np.floor(data.target_fraction * size)).astype(np.int64)
    is_target = rank < n_target
    heldout = heldout.loc[enough]
    is_target = is_target[enough]

    dropped = {
        role: int(ids.size - heldout.loc[np.isin(heldout["userId"].to_numpy(), ids), "userId"].nunique())
        for role, ids in (("validation", val_ids), ("test", test_ids))
    }
    kept = heldout["userId"].unique()
    roles = {"train": train_ids, "validation": np.intersect1d(val_ids, kept),
             "test": np.intersect1d(test_ids, kept)}
    users, items = _index_frames(item_ids, titles, roles)
    in_val = np.isin(heldout["userId"].to_numpy(), roles["validation"])
    parts = {
        "train": train_pos,
        "validation_foldin": heldout.loc[in_val & ~is_target],
        "validation_target": heldout.loc[in_val & is_target],
        "test_foldin": heldout.loc[~in_val & ~is_target],
        "test_target": heldout.loc[~in_val & is_target],
    }
    encoded = {name: _encode(frame, users, items) for name, frame in parts.items()}
    extra = {"heldout_users_requested": n, "heldout_users_dropped": dropped,
             "heldout_items_outside_train": int((~np.isin(
                 pos.loc[~np.isin(uid, train_ids), "movieId"].to_numpy(), item_ids)).sum())}
    return Split(users=users, items=items, stats=_stats(pos, users, items, encoded, data, extra), **encoded)


def split_temporal(pos: pd.DataFrame, data: DataConfig, titles: pd.DataFrame) -> Split:
    """Each user's positives in time order: first 80% train, next 10% validation, last 10% test."""
    if "timestamp" not in pos.columns:
        raise SplitError(
            "data.split=temporal needs timestamps, but the ratings have no timestamp column; "
            "use data.split: heldout_users, or a release with timestamps"
        )
    pos = pos.sort_values(["userId", "timestamp", "movieId"], kind="stable").reset_index(drop=True)
    rank, size = _rank_within_user(pos["userId"].to_numpy())
    holdout = np.maximum(1, np.round(0.1 * size)).astype(np.int64)
    n_train = size - 2 * holdout
    phase = np.where(rank < n_train, 0, np.where(rank < n_train + holdout, 1, 2))
    train_pos = pos.loc[phase == 0]
    item_ids = np.sort(train_pos["movieId"].unique())
    known = np.isin(pos["movieId"].to_numpy(), item_ids)
    val_target = pos.loc[(phase == 1) & known]
    test_target = pos.loc[(phase == 2) & known]
    all_users = np.sort(pos["userId"].unique())
    roles = {"train": all_users, "validation": np.array([], dtype=all_users.dtype),
             "test": np.array([], dtype=all_users.dtype)}
    users, items = _index_frames(item_ids, titles, roles)
    val_users = val_target["userId"].unique()
    test_users = test_target["userId"].unique()
    uid = pos["userId"].to_numpy()
    parts = {
        "train": train_pos,
        "validation_foldin": pos.loc[(phase == 0) & np.isin(uid, val_users)],
        "validation_target": val_target,
        "test_foldin": pos.loc[(phase <= 1) & known & np.isin(uid, test_users)],
        "test_target": test_target,
    }
    encoded = {name: _encode(frame, users, items) for name, frame in parts.items()}
    extra = {"target_items_outside_train": int(((phase > 0) & ~known).sum()),
             "validation_users_without_target": int(all_users.size - val_users.size),
             "test_users_without_target": int(all_users.size - test_users.size)}
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
    stats.update(extra)
    return stats


def split(ratings: pd.DataFrame, data: DataConfig, titles: pd.DataFrame) -> Split:
    pos = binarize(ratings, data.min_rating, data.min_user_positives)
    if pos.empty:
        raise SplitError(
            f"no user has >= {data.min_user_positives} ratings >= {data.min_rating} "
            "(data.min_rating, data.min_user_positives): nothing is left to train on"
        )
    splitter = split_heldout_users if data.split == "heldout_users" else split_temporal
    result = splitter(pos, data, titles)
    result.stats.update(ratings=int(len(ratings)), dataset=data.dataset)
    return result
