"""Shared helpers of the data-stage tests: parameter files, tiny synthetic ratings, archives."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multvae.config import SYNTHETIC_PRESETS
from multvae.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
# Real MovieLens releases, read in place beside the repository; never copied into it.
SHARED_DATASETS = (REPO / "../shared/datasets").resolve()


def _shared(relative: str) -> Path:
    path = SHARED_DATASETS / relative
    if not path.is_file():
        pytest.skip(f"{path} is not here (the MovieLens licence forbids shipping it with the project)")
    return path


@pytest.fixture(scope="session")
def ml_latest_small_ratings() -> Path:
    """The real ml-latest-small ratings file; the test is skipped where it is absent."""
    return _shared("ml-latest-small/ratings.csv.gz")


@pytest.fixture(scope="session")
def ml1m_ratings() -> Path:
    """The real ML-1M ratings file; the test is skipped where it is absent."""
    return _shared("ml-1m/ratings.csv.gz")


@pytest.fixture(scope="session")
def tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, movies) of the `tiny` preset: 300 users, 200 items, about 7,000 ratings.
    Shared by the whole session: copy before changing."""
    return generate(SYNTHETIC_PRESETS["tiny"])


@pytest.fixture
def params_file(tmp_path):
    """Write a params.yaml with the given `data` section (the rest takes the defaults)."""

    def write(name: str = "params.yaml", **data) -> Path:
        if "source" in data:  # a local file is not the default ml-20m: label it by its content
            data.setdefault("dataset", "auto")
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"data": data}))
        return path

    return write


def _write_dat(ratings: pd.DataFrame, path: Path) -> Path:
    """ML-1M's `userId::movieId::rating::timestamp` layout, gzipped if the name ends in .gz."""
    lines = "".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in ratings[
        ["userId", "movieId", "rating", "timestamp"]].itertuples(index=False))
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(lines)
    else:
        path.write_text(lines)
    return path


def _make_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    """A deflated zip with the given entry names, written as is (no path clean-up)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
    return path



@pytest.fixture(scope="session")
def write_dat():
    """A function writing ratings in ML-1M's `::` layout (see _write_dat)."""
    return _write_dat


@pytest.fixture(scope="session")
def make_zip():
    """A function writing a zip with the given entries as is (see _make_zip)."""
    return _make_zip
