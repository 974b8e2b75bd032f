"""Shared helpers of the data-stage tests: parameter files, tiny synthetic ratings, archives."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multvae.synthetic import PRESETS, generate

REPO = Path(__file__).resolve().parents[1]
# The real ml-latest-small release, read in place beside the repository; never copied into it.
ML_LATEST_SMALL = (REPO / "../shared/datasets/ml-latest-small").resolve()


@pytest.fixture(scope="session")
def tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, movies) of the `tiny` preset: 300 users, 200 items, about 7,000 ratings.
    Shared by the whole session: copy before changing."""
    return generate(PRESETS["tiny"])


@pytest.fixture
def params_file(tmp_path):
    """Write a params.yaml with the given `data` section (the rest takes the defaults)."""

    def write(name: str = "params.yaml", **data) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"data": data}))
        return path

    return write


def write_dat(ratings: pd.DataFrame, path: Path) -> Path:
    """ML-1M's `userId::movieId::rating::timestamp` layout, gzipped if the name ends in .gz."""
    lines = "".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in ratings[
        ["userId", "movieId", "rating", "timestamp"]].itertuples(index=False))
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(lines)
    else:
        path.write_text(lines)
    return path


def make_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    """A deflated zip with the given entry names, written as is (no path clean-up)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
    return path

