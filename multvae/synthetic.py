"""Seeded MovieLens-like ratings with structure a collaborative model can find.

Items follow a power-law popularity; every item belongs to one of `tastes` groups and every user
has a favourite group. Most of a user's ratings fall in that group and are rated highly, the
rest are drawn by global popularity and rated lower. Popularity alone therefore ranks poorly
while a model that learns the groups ranks well: a check that the pipeline really learns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from multvae.config import SyntheticConfig

IN_TASTE_SHARE = 0.75
POPULARITY_EXPONENT = 0.9
T0 = 946_684_800  # 2000-01-01, so timestamps look like MovieLens's


def generate(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (ratings, movies) in the schema of `multvae.ratings.read_ratings`/`read_movies`."""
    rng = np.random.default_rng(cfg.seed)
    n_users, n_items = cfg.users, cfg.items
    popularity = 1.0 / np.arange(1, n_items + 1) ** POPULARITY_EXPONENT
    popularity = popularity[rng.permutation(n_items)]
    item_taste = rng.integers(0, cfg.tastes, n_items)
    user_taste = rng.integers(0, cfg.tastes, n_users)

    mean_extra = max(cfg.ratings_per_user - 5.0, 1.0)
    counts = 5 + rng.geometric(1.0 / mean_extra, n_users) - 1
    counts = np.minimum(counts, max(5, n_items // 2))
    # Popular items are drawn repeatedly; draw twice as many and keep each user's first
    # `counts[u]` distinct items, so the requested size survives de-duplication.
    user = np.repeat(np.arange(n_users, dtype=np.int64), 2 * counts)
    in_taste = rng.random(user.size) < IN_TASTE_SHARE

    item = np.empty(user.size, dtype=np.int64)
    global_cdf = np.cumsum(popularity) / popularity.sum()
    outside = ~in_taste
    item[outside] = np.searchsorted(global_cdf, rng.random(int(outside.sum())), side="right")
    taste_of_row = user_taste[user]
    for taste in range(cfg.tastes):
        members = np.flatnonzero(item_taste == taste)
        rows = np.flatnonzero(in_taste & (taste_of_row == taste))
        if rows.size == 0:
            continue
        if members.size == 0:
            item[rows] = np.searchsorted(global_cdf, rng.random(rows.size), side="right")
            continue
        cdf = np.cumsum(popularity[members]) / popularity[members].sum()
        item[rows] = members[np.searchsorted(cdf, rng.random(rows.size), side="right")]
    np.minimum(item, n_items - 1, out=item)

    liked = item_taste[item] == taste_of_row
    rating = np.where(
        liked,
        rng.choice(np.array([3.0, 4.0, 4.5, 5.0]), user.size, p=[0.1, 0.35, 0.2, 0.35]),
        rng.choice(np.array([1.0, 2.0, 3.0, 3.5, 4.0, 5.0]), user.size,
                   p=[0.1, 0.2, 0.3, 0.15, 0.17, 0.08]),
    ).astype(np.float32)
    timestamp = T0 + rng.integers(0, 400_000_000, user.size)

    _, first = np.unique(user * n_items + item, return_index=True)
    first.sort()
    starts = np.searchsorted(user[first], np.arange(n_users))
    rank = np.arange(first.size) - starts[user[first]]
    first = first[rank < counts[user[first]]]
    ratings = pd.DataFrame({
        "userId": user[first] + 1,
        "movieId": item[first] + 1,
        "rating": rating[first],
        "timestamp": timestamp[first].astype(np.int64),
    })
    movies = pd.DataFrame({
        "movieId": np.arange(1, n_items + 1, dtype=np.int64),
        "title": [f"Synthetic movie {i + 1} (taste {t})" for i, t in enumerate(item_taste)],
    })
    return ratings, movies


def write_ratings_csv(ratings: pd.DataFrame, path: Path, gzip: bool = False) -> None:
    """MovieLens's CSV layout (`userId,movieId,rating,timestamp`)."""
    table = pa.Table.from_pandas(ratings, preserve_index=False)
    if gzip:
        with pa.CompressedOutputStream(str(path), "gzip") as out:
            pacsv.write_csv(table, out)
    else:
        pacsv.write_csv(table, path)
