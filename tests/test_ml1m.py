"""On the real ML-1M ratings (read in place, never copied): Mult-VAE clearly beats popularity."""

from dataclasses import replace

import numpy as np
import pytest

from multvae.data import load_dataset
from multvae.params import defaults
from multvae.ratings import read_movies, read_ratings
from multvae.split import split, write_split
from multvae.training import train_model

BASE, RUNTIME = defaults()

pytestmark = pytest.mark.slow


def test_original_reaches_one_and_a_half_times_most_popular_ndcg(tmp_path, ml1m_ratings):
    cfg = replace(BASE,
        data=replace(BASE.data, dataset="ml-1m", heldout_users=600),
        train=replace(BASE.train, epochs=20),
    )
    ratings = read_ratings(ml1m_ratings)
    movies = read_movies(ml1m_ratings.with_name("movies.dat"))
    write_split(split(ratings, cfg.data, movies), tmp_path / "p", tmp_path / "s.json")
    data = load_dataset(tmp_path / "p" / "fold-0")
    result = train_model(cfg, data, seed=98765, log=lambda _: None)

    # Most-popular NDCG@100 on the validation users, computed independently with plain numpy.
    popularity = np.asarray(data.train.sum(axis=0)).ravel()
    foldin, target = data.validation.foldin.toarray() > 0, data.validation.target.toarray() > 0
    scores = np.where(foldin, -np.inf, popularity[None, :])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    hit = np.take_along_axis(target, top, axis=1)
    discount = 1 / np.log2(np.arange(2, 102))
    idcg = np.array([discount[: min(n, 100)].sum() for n in target.sum(axis=1)])
    popular_ndcg = ((hit * discount).sum(axis=1) / idcg).mean()

    assert 0.15 < popular_ndcg < 0.3
    assert result.best_validation["val_ndcg@100"] >= 1.5 * popular_ndcg
