"""Which MovieLens release a table of ratings is, from its content rather than its name.

A release is recognised by its number of ratings, users and movies and, where known, a hash of its
sorted (user, movie, rating) triples, so a CSV converted from ML-1M's `.dat` is still ML-1M and a
file named ml-20m.csv holding something else is not. What matches no release is labelled
`custom: <file name>` with its fingerprint, so stats, tables and plots say what the data really is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multvae.errors import MultVAEError


class IdentityError(MultVAEError):
    """The ratings do not match the release they claim to be; the message says what was expected."""


@dataclass(frozen=True)
class Content:
    """Counts and content hash of a ratings table (after duplicates are resolved)."""

    ratings: int
    users: int
    movies: int
    sha256: str  # of the (userId, movieId, 2 x rating) triples sorted by user and movie


@dataclass(frozen=True)
class Known:
    """A release's published counts and, where it could be computed here, its content hash."""

    ratings: int
    users: int
    movies: int
    sha256: str | None = None

    def describe(self) -> str:
        return f"{self.ratings:,} ratings of {self.users:,} users on {self.movies:,} movies"


# Counts from each release's README (GroupLens); hashes computed from copies of ML-1M and of the
# September 2018 ml-latest-small. The full ml-latest is re-published with new ratings: no identity.
KNOWN: dict[str, Known] = {
    "ml-100k": Known(100_000, 943, 1_682),
    "ml-1m": Known(1_000_209, 6_040, 3_706, "4a84301350becdd3"),
    "ml-10m": Known(10_000_054, 69_878, 10_677),
    "ml-20m": Known(20_000_263, 138_493, 26_744),
    "ml-25m": Known(25_000_095, 162_541, 59_047),
    "ml-32m": Known(32_000_204, 200_948, 84_432),
    "ml-latest-small": Known(100_836, 610, 9_724, "76b262c66c063c6d"),
}


def content(ratings: pd.DataFrame) -> Content:
    order = np.lexsort((ratings["movieId"].to_numpy(), ratings["userId"].to_numpy()))
    digest = hashlib.sha256()
    for column, scale in (("userId", 1), ("movieId", 1), ("rating", 2)):
        values = np.rint(ratings[column].to_numpy()[order].astype(np.float64) * scale).astype(np.int64)
        digest.update(values.tobytes())
    return Content(ratings=len(ratings), users=int(ratings["userId"].nunique()),
                   movies=int(ratings["movieId"].nunique()), sha256=digest.hexdigest()[:16])


def _matches(found: Content, known: Known) -> bool:
    counts = (found.ratings, found.users, found.movies) == (known.ratings, known.users, known.movies)
    return counts and (known.sha256 is None or known.sha256 == found.sha256)


def recognise(found: Content) -> str | None:
    """The release whose content this is, or None."""
    return next((name for name, known in KNOWN.items() if _matches(found, known)), None)


def label(found: Content, claimed: str | None, file_name: str, where: str) -> str:
    """The dataset's name for stats, tables and plots. A claimed release (data.dataset, or the
    archive's file name) must match; `claimed` None means no claim. `where` names the source."""
    if claimed is not None and claimed in KNOWN and _matches(found, KNOWN[claimed]):
        return claimed
    if claimed is not None and claimed in KNOWN:
        known = KNOWN[claimed]
        hashed = f", content {known.sha256}" if known.sha256 else ""
        raise IdentityError(
            f"{where}: claimed to be {claimed} ({known.describe()}{hashed}) but holds "
            f"{found.ratings:,} ratings of {found.users:,} users on {found.movies:,} movies, content "
            f"{found.sha256}; set data.dataset to the release it is, or to auto to label it by content")
    if claimed is not None and claimed not in KNOWN:
        return recognise(found) or claimed  # a release whose content is not fixed (ml-latest)
    return recognise(found) or f"custom: {file_name}"
