"""Binarizing and splitting: the invariants training and evaluation rely on, for both protocols."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from multvae.config import DataConfig
from multvae.params import defaults
from multvae.split import Split, SplitError, binarize, split

BASE, RUNTIME = defaults()

HELDOUT = replace(BASE.data, dataset="synthetic", split="heldout_users", heldout_users=30, seed=1)
TEMPORAL = replace(BASE.data, dataset="synthetic", split="temporal", seed=1)
PARTS = ("train", "validation_foldin", "validation_target", "test_foldin", "test_target")


def positives(ratings: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    """The positives computed here with plain pandas, independently of multvae.split."""
    pos = ratings[ratings["rating"] >= data.min_rating].drop_duplicates(["userId", "movieId"])
    counts = pos.groupby("userId")["movieId"].transform("size")
    return pos[counts >= data.min_user_positives]


def decoded(result: Split, name: str) -> pd.DataFrame:
    """A table as (userId, movieId) pairs."""
    frame = getattr(result, name)
    return pd.DataFrame({"userId": result.users["userId"].to_numpy()[frame["user"].to_numpy()],
                         "movieId": result.items["movieId"].to_numpy()[frame["item"].to_numpy()]})


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["userId"].tolist(), frame["movieId"].tolist(), strict=True))


def check_common(result: Split, pos: pd.DataFrame) -> None:
    """What holds for every protocol."""
    users, items = result.users, result.items
    assert users["user"].tolist() == list(range(len(users))) and users["userId"].is_monotonic_increasing
    assert items["item"].tolist() == list(range(len(items))) and items["movieId"].is_unique
    assert items["movieId"].is_monotonic_increasing
    positive_pairs = pairs(pos)
    for name in PARTS:
        frame = getattr(result, name)
        assert frame.dtypes.to_dict() == {"user": np.int32, "item": np.int32}, name
        assert frame["item"].between(0, len(items) - 1).all(), f"{name}: item outside the item index"
        assert frame["user"].between(0, len(users) - 1).all(), f"{name}: user outside the user index"
        assert not frame.duplicated().any(), name
        assert frame.equals(frame.sort_values(["user", "item"]).reset_index(drop=True)), name
        assert pairs(decoded(result, name)) <= positive_pairs, f"{name}: a pair that is not a positive"
    # Items are exactly those of the training rows: nothing in any table the model cannot score.
    assert set(result.train["item"]) == set(range(len(items)))
    for role in ("validation", "test"):
        foldin, target = getattr(result, f"{role}_foldin"), getattr(result, f"{role}_target")
        assert not pairs(decoded(result, f"{role}_foldin")) & pairs(decoded(result, f"{role}_target"))
        # Every evaluated user has something to predict and something to predict it from.
        assert len(target) > 0
        assert set(target["user"]) <= set(foldin["user"])


def test_heldout_users_invariants(tiny):
    ratings = tiny[0]
    pos = positives(ratings, HELDOUT)
    result = split(ratings, HELDOUT, tiny[1])[0]
    check_common(result, pos)
    roles = result.users.set_index("user")["role"]
    train_u, val_u, test_u = (set(roles.index[roles == r]) for r in ("train", "validation", "test"))
    assert len(val_u) == len(test_u) == 30 and result.stats["heldout_users_dropped"] == {"validation": 0,
                                                                                          "test": 0}
    assert not (train_u & val_u or train_u & test_u or val_u & test_u)
    assert train_u | val_u | test_u == set(range(pos["userId"].nunique()))
    assert set(result.train["user"]) == train_u
    assert set(result.validation_foldin["user"]) == set(result.validation_target["user"]) == val_u
    assert set(result.test_foldin["user"]) == set(result.test_target["user"]) == test_u
    # The items are the training users' movies; a held-out user's fold-in and target together are
    # his positives on those items, and the target is max(1, floor(20%)) of them.
    train_ids = set(result.users.loc[result.users["role"] == "train", "userId"])
    train_pos = pos[pos["userId"].isin(train_ids)]
    assert set(result.items["movieId"]) == set(train_pos["movieId"])
    assert pairs(decoded(result, "train")) == pairs(train_pos)
    for role in ("validation", "test"):
        ids = set(result.users.loc[result.users["role"] == role, "userId"])
        own = pos[pos["userId"].isin(ids) & pos["movieId"].isin(result.items["movieId"])]
        got = pd.concat([decoded(result, f"{role}_foldin"), decoded(result, f"{role}_target")])
        assert pairs(got) == pairs(own)
        n = own.groupby("userId").size()
        expected = np.maximum(1, np.floor(HELDOUT.target_fraction * n)).astype(int)
        assert decoded(result, f"{role}_target").groupby("userId").size().sort_index().tolist() == \
            expected.sort_index().tolist()


def timestamps(result: Split, name: str, ratings: pd.DataFrame) -> pd.DataFrame:
    first_rating = ratings.drop_duplicates(["userId", "movieId"])
    return decoded(result, name).merge(first_rating, on=["userId", "movieId"])


def test_temporal_invariants(tiny):
    ratings = tiny[0]
    pos = positives(ratings, TEMPORAL)
    result = split(ratings, TEMPORAL, tiny[1])[0]
    check_common(result, pos)
    assert set(result.users["role"]) == {"train"}
    last_train = timestamps(result, "train", ratings).groupby("userId")["timestamp"].max()
    last_val = timestamps(result, "validation_target", ratings).groupby("userId")["timestamp"].max()
    for name in ("validation_target", "test_target"):
        target = timestamps(result, name, ratings)
        first = target.groupby("userId")["timestamp"].min()
        assert (first >= last_train.reindex(first.index)).all(), f"{name}: a target older than training"
    first_test = timestamps(result, "test_target", ratings).groupby("userId")["timestamp"].min()
    both = first_test.index.intersection(last_val.index)
    assert (first_test[both] >= last_val[both]).all()
    # Fold-in is the user's history: training items for validation, plus validation items for test.
    train = decoded(result, "train")
    val_users = set(result.validation_target["user"])
    foldin = result.validation_foldin
    assert foldin.equals(result.train[result.train["user"].isin(val_users)].reset_index(drop=True))
    history = pd.concat([train, decoded(result, "validation_target")])
    test_ids = set(decoded(result, "test_target")["userId"])
    assert pairs(decoded(result, "test_foldin")) == pairs(history[history["userId"].isin(test_ids)])
    assert result.stats["validation_users"] > 0.9 * pos["userId"].nunique()


def test_temporal_keeps_every_positive_of_a_user_with_too_few_to_split():
    # Two positives: nothing would be left to fold in, so both are for training.
    ratings = pd.DataFrame({"userId": [1, 1, 2, 2, 2, 2, 2, 2], "movieId": [1, 2, 1, 2, 3, 4, 5, 6],
                            "rating": np.float32(5.0), "timestamp": [1, 2, 1, 2, 3, 4, 5, 6]})
    data = dataclasses.replace(TEMPORAL, min_user_positives=2)
    no_titles = pd.DataFrame({"movieId": pd.Series(dtype="int64"), "title": pd.Series(dtype="str")})
    result = split(ratings, data, no_titles)[0]
    assert pairs(decoded(result, "train")) >= {(1, 1), (1, 2)}
    for role in ("validation", "test"):
        target, foldin = getattr(result, f"{role}_target"), getattr(result, f"{role}_foldin")
        assert set(target["user"]) <= set(foldin["user"])


def test_temporal_split_without_timestamps_says_it_needs_them(tiny):
    with pytest.raises(SplitError, match="data.split=temporal needs timestamps"):
        split(tiny[0].drop(columns="timestamp"), TEMPORAL, tiny[1])


def test_heldout_users_works_without_timestamps(tiny):
    with_ts = split(tiny[0], HELDOUT, tiny[1])[0]
    without = split(tiny[0].drop(columns="timestamp"), HELDOUT, tiny[1])[0]
    for name in Split.TABLES:
        pd.testing.assert_frame_equal(getattr(with_ts, name), getattr(without, name))


@pytest.mark.parametrize("data", [HELDOUT, TEMPORAL], ids=["heldout_users", "temporal"])
def test_same_seed_gives_identical_tables_whatever_the_row_order(tiny, data):
    first = split(tiny[0], data, tiny[1])[0]
    again = split(tiny[0].sample(frac=1.0, random_state=3), data, tiny[1])[0]
    for name in Split.TABLES:
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    assert first.stats == again.stats


def test_another_seed_holds_out_other_users(tiny):
    def heldout_ids(seed):
        users = split(tiny[0], dataclasses.replace(HELDOUT, seed=seed), tiny[1])[0].users
        return set(users.loc[users["role"] != "train", "userId"])

    assert heldout_ids(1) == heldout_ids(1)
    assert heldout_ids(1) != heldout_ids(2)


def test_heldout_fraction_is_a_share_of_the_kept_users(tiny):
    result = split(tiny[0], dataclasses.replace(HELDOUT, heldout_users=0.1), tiny[1])[0]
    kept = positives(tiny[0], HELDOUT)["userId"].nunique()
    assert result.stats["heldout_users_requested"] == round(0.1 * kept)


def test_binarize_keeps_positives_of_users_with_enough_once_each():
    ratings = pd.DataFrame({
        "userId": [3, 3, 3, 3, 1, 1, 1, 3, 2],
        "movieId": [9, 8, 7, 8, 1, 2, 3, 6, 1],
        "rating": np.array([4, 5, 4.5, 4, 5, 5, 3.5, 1, 5], dtype=np.float32),
        "timestamp": [10, 11, 12, 13, 1, 2, 3, 4, 5],
    })
    got = binarize(ratings, min_rating=4.0, min_user_positives=2)
    # User 3 rated movie 8 twice: it counts once, with its first row. User 1 has 2, user 2 one.
    assert got.to_dict("list") == {"userId": [1, 1, 3, 3, 3], "movieId": [1, 2, 7, 8, 9],
                                   "timestamp": [1, 2, 12, 11, 10]}


def test_no_positive_left_after_filtering_is_a_split_error(tiny):
    low = tiny[0].assign(rating=np.float32(3.5))
    with pytest.raises(SplitError, match=r"no user has >= 5 ratings >= 4.*data\.min_rating"):
        split(low, HELDOUT, tiny[1])


def test_more_heldout_users_than_exist_names_data_heldout_users(tiny):
    kept = positives(tiny[0], HELDOUT)["userId"].nunique()
    with pytest.raises(SplitError, match=rf"data\.heldout_users=150 .* only {kept} users"):
        split(tiny[0], dataclasses.replace(HELDOUT, heldout_users=150), tiny[1])


@pytest.mark.parametrize("n_users", [1, 2, 3, 4, 10])
def test_the_heldout_error_suggests_only_values_that_work(n_users):
    """The message's advice must be accepted when followed (it once suggested 0 and 0.1 for one user)."""
    import re

    ratings = pd.DataFrame({"userId": np.repeat(np.arange(n_users), 6),
                            "movieId": np.tile(np.arange(6), n_users), "rating": 5.0})
    titles = pd.DataFrame({"movieId": np.arange(6), "title": [f"m{i}" for i in range(6)]})
    with pytest.raises(SplitError) as err:
        split(ratings, replace(BASE.data, dataset="synthetic", heldout_users=1000), titles)
    message = str(err.value)
    if n_users < 3:
        assert "a split needs at least 3" in message
        return
    found = re.search(r"use a count from 1 to (\d+)$", message)
    assert found, message
    most = int(found.group(1))
    for count in (1, most):
        folds = split(ratings, replace(BASE.data, dataset="synthetic", heldout_users=count), titles)
        assert folds[0].stats["test_users"] == count


def test_the_statistics_give_the_training_users_positives_percentiles(tiny):
    result = split(tiny[0], HELDOUT, tiny[1])[0]
    counts = result.train.groupby("user").size()
    spread = result.stats["train_user_positives"]
    assert spread["p50"] == float(np.median(counts))
    assert spread["p10"] <= spread["p50"] <= spread["p90"] == float(np.percentile(counts, 90))
