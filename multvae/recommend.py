"""Top-N movies from a trained variant, for a user of the split or for movies a person likes.

Recommending is the evaluation's fold-in: the known items go through the encoder and the
decoder's logits at the posterior mean rank every other item; the known items themselves are never
returned. Only what an answer needs is read (the model, the item table, the user table when asked
for a user, and that one user's rows), so once the model is loaded an answer takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from multvae.data import read_manifest, read_table
from multvae.errors import MultVAEError
from multvae.layout import fold_dir
from multvae.metrics import top_k
from multvae.model import make_scorer
from multvae.model_file import load_model

# Where a user's known items are: a held-out user's fold-in, a training user's training rows.
INPUT_TABLE = {"validation": "validation_foldin", "test": "test_foldin", "train": "train"}
CANDIDATES_SHOWN = 5


class RecommendError(MultVAEError, ValueError):
    """Bad input to `recommend` (unknown user, movie, title, variant or seed); the message names it."""


@dataclass
class Recommendations:
    """A ranked answer with what it was computed from, for the table and the JSON output."""

    top: pd.DataFrame  # rank, movieId, title, score (the decoder's logit), best first
    given: pd.DataFrame  # movieId, title: the input, none of which is in `top`
    user: int | None = None  # MovieLens userId, when the input is a user's items
    role: str | None = None  # that user's role in the split: train | validation | test
    ignored: list[int] = field(default_factory=list)  # given movieIds outside the item index

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user, "role": self.role,
            "given": self.given.to_dict(orient="records"), "ignored": self.ignored,
            "recommendations": self.top.to_dict(orient="records"),
        }


class Recommender:
    """One trained model and its item table, loaded once, answering any number of queries."""

    def __init__(self, variant: str = "original", models: Path = Path("models"),
                 data: Path = Path("data/prepared"), seed: int | None = None,
                 known: Sequence[str] | None = None, device: torch.device | str = "cpu",
                 fold: int | None = None):
        """`known`: the variants of params.yaml, to tell an unknown name from an untrained one."""
        self.variant = variant
        self.path, self.fold = _model_path(Path(models), variant, fold, seed, known)
        self.data = fold_dir(data, self.fold)
        self.device = torch.device(device)
        self.model, saved = load_model(self.path, self.device, read_manifest(self.data)["fingerprint"],
                                       _train_command(variant))
        self.seed = saved.seed
        self.items = read_table(self.data, "items", columns=["item", "movieId", "title"]).sort_values(
            "item", ignore_index=True)
        if not np.array_equal(saved.movie_ids, self.items["movieId"].to_numpy()):
            raise RecommendError(
                f"{self.path}: its item map differs from {self.data / 'items.parquet'} although the "
                "split's fingerprint matches; the prepared data was changed by hand: "
                "run `dvc repro -f prepare`")
        self._movie_index = pd.Index(self.items["movieId"].to_numpy())
        self._score = make_scorer(self.model, self.device)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @cached_property
    def _users(self) -> pd.DataFrame:
        """userId -> (user, role); read on the first user query only."""
        return read_table(self.data, "users", columns=["user", "userId", "role"]).set_index("userId")

    @cached_property
    def _lower_titles(self) -> np.ndarray:
        return self.items["title"].str.lower().to_numpy(dtype=object)

    def for_user(self, user_id: int, n: int = 10) -> Recommendations:
        """Top `n` for a user of the split, from a held-out user's fold-in or a training user's
        training items (the MovieLens `userId`)."""
        if user_id not in self._users.index:
            raise RecommendError(
                f"user {user_id} is not in {self.data / 'users.parquet'}: no such userId, or the split "
                "dropped the user (too few positives, or no fold-in and target left)")
        user, role = self._users.loc[user_id, ["user", "role"]]
        rows = read_table(self.data, INPUT_TABLE[role], columns=["item"], filters=[("user", "==", int(user))])
        answer = self._recommend(rows["item"].to_numpy(), n)
        answer.user, answer.role = int(user_id), str(role)
        return answer

    def for_items(self, movies: Sequence[int | str], n: int = 10) -> Recommendations:
        """Top `n` for a new user who likes `movies`: movieIds (a number, int or str, is an id) or
        titles. Ids outside the item index are ignored (listed in the answer) unless all are."""
        if not movies:
            raise RecommendError("no movies given: name at least one movieId or title")
        items: list[int] = []
        ignored: list[int] = []
        for movie in movies:
            movie_id = _as_movie_id(movie)
            if movie_id is None:
                items.append(self._match_title(str(movie)))
            elif (item := int(self._movie_index.get_indexer([movie_id])[0])) >= 0:
                items.append(item)
            else:
                ignored.append(movie_id)
        if not items:
            ids = ", ".join(str(m) for m in ignored)
            raise RecommendError(
                f"none of the given movies is known to the model: movieId {ids} "
                f"{'is' if len(ignored) == 1 else 'are'} not among its {self.n_items:,} items "
                "(movies no training user rated positively)")
        answer = self._recommend(np.asarray(items), n)
        answer.ignored = ignored
        return answer

    def _match_title(self, text: str) -> int:
        """The item of a title: the exact title (case-insensitive), else the one title containing it."""
        query = text.strip().lower()
        titles = self._lower_titles
        hits = np.flatnonzero(titles == query)
        kind = "exactly"
        if hits.size == 0:
            hits = np.flatnonzero([query in title for title in titles])
            kind = "by substring"
        if hits.size == 1:
            return int(hits[0])
        if hits.size == 0:
            raise RecommendError(
                f"no movie title matches '{text}' (case-insensitive) among the model's {self.n_items:,} "
                "movies; give another part of the title or the movieId")
        # Shortest first: the closest matches to what was typed.
        order = hits[np.argsort([len(titles[i]) for i in hits], kind="stable")]
        shown = "; ".join(f"{self.items.at[i, 'title']} [movieId {self.items.at[i, 'movieId']}]"
                          for i in order[:CANDIDATES_SHOWN])
        more = f"; and {hits.size - CANDIDATES_SHOWN} more" if hits.size > CANDIDATES_SHOWN else ""
        raise RecommendError(f"'{text}' matches {hits.size} titles {kind}: {shown}{more}; "
                             "give the full title or the movieId")

    def _recommend(self, items: np.ndarray, n: int) -> Recommendations:
        if n < 1:
            raise RecommendError(f"asked for {n} movies; ask for at least 1")
        items = np.unique(items)
        if items.size == 0:
            raise RecommendError("the user has no items the model knows: nothing to fold in")
        foldin = sp.csr_matrix((np.ones(items.size, dtype=np.float32), (np.zeros(items.size, dtype=np.int64),
                                                                        items)), shape=(1, self.n_items))
        k = min(n, self.n_items - items.size)
        with torch.inference_mode():
            scores = self._score(foldin)
            top = top_k(scores, foldin, k)[0]
            best = scores[0, top].cpu().numpy()
            top = top.cpu()
        picked = self.items.iloc[top.numpy()]
        table = pd.DataFrame({"rank": np.arange(1, k + 1), "movieId": picked["movieId"].to_numpy(),
                              "title": picked["title"].to_numpy(), "score": best.astype(float)})
        given = self.items.iloc[items][["movieId", "title"]].reset_index(drop=True)
        return Recommendations(top=table, given=given)


def _as_movie_id(movie: int | str) -> int | None:
    if isinstance(movie, int | np.integer):
        return int(movie)
    text = movie.strip()
    return int(text) if text.isdigit() else None


def _train_command(variant: str) -> str:
    return "multvae train" if variant == "base" else f"dvc repro --glob 'train@{variant}-*'"


def _model_path(models: Path, variant: str, fold: int | None, seed: int | None,
                known: Sequence[str] | None) -> tuple[Path, int]:
    """The run's model of the variant (the lowest fold and seed by default) and its fold, or an
    error saying what to run."""
    folder = models / variant
    runs: dict[tuple[int, int], Path] = {}
    for path in folder.glob("fold-*/seed-*.pt"):
        k, s = path.parent.name.removeprefix("fold-"), path.stem.removeprefix("seed-")
        if k.isdigit() and s.isdigit():
            runs[int(k), int(s)] = path
    if not runs:
        if known is not None and variant not in known and variant != "base":
            raise RecommendError(f"unknown variant '{variant}': not under `variants:` in params.yaml "
                                 f"(known: {', '.join(known)})")
        raise RecommendError(f"variant '{variant}' has no trained model ({folder}/fold-*/seed-*.pt not "
                             f"found); run `{_train_command(variant)}` first")
    chosen = [run for run in sorted(runs) if fold in (None, run[0]) and seed in (None, run[1])]
    if not chosen:
        wanted = folder / f"fold-{'*' if fold is None else fold}" / f"seed-{'*' if seed is None else seed}.pt"
        raise RecommendError(f"{wanted} not found; trained runs of '{variant}' (fold, seed): "
                             f"{', '.join(f'({k}, {s})' for k, s in sorted(runs))}")
    return runs[chosen[0]], chosen[0][0]
