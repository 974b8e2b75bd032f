"""Shared helpers of the data-stage tests: parameter files, tiny synthetic ratings, archives."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multvae.config import SYNTHETIC_PRESETS
from multvae.params import defaults
from multvae.synthetic import generate

BASE, RUNTIME = defaults()

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


@pytest.fixture(scope="session")
def tiny_dataset(tiny, tmp_path_factory):
    """The tiny ratings split with 30 validation and 30 test users, read as training reads it
    (fold 0 of the prepare stage's layout). Shared by the session: treat it as read-only."""
    from multvae.data import load_dataset
    from multvae.split import split, write_split

    root = tmp_path_factory.mktemp("tiny-dataset")
    write_split(split(tiny[0], replace(BASE.data, dataset="synthetic", heldout_users=30),
                      tiny[1]), root / "prepared",
                root / "stats.json")
    return load_dataset(root / "prepared" / "fold-0")


def complete(partial: dict) -> dict:
    """A whole params mapping from a test's few keys (multvae.config.overlay_defaults)."""
    from multvae.params import overlay_defaults

    return overlay_defaults(partial)


def config_with(**sections: dict):
    """conf/config.yaml's base configuration with some keys changed, checked by the schema."""
    from multvae.config import from_dict, to_dict
    from multvae.params import merged

    return from_dict(merged(to_dict(BASE), sections))


def dump_params(partial: dict) -> str:
    """`complete(partial)` as params.yaml text."""
    return yaml.safe_dump(complete(partial), sort_keys=False)


@pytest.fixture
def params_file(tmp_path):
    """Write a params.yaml with the given `data` section (the rest takes the defaults)."""

    def write(name: str = "params.yaml", **data) -> Path:
        if "source" in data:  # a local file is not the default ml-20m: label it by its content
            data.setdefault("dataset", "auto")
        path = tmp_path / name
        path.write_text(dump_params({"data": data}))
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


BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> str:
    """A command with this environment's tools first on PATH; its standard output, or a failure
    that shows both streams."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def run():
    """Run a command (dvc, git, multvae) in a folder; assert it succeeds; return its output."""
    return _run


@pytest.fixture(scope="session")
def ran():
    """The stages a `dvc repro` output says it ran (not the ones it found unchanged)."""
    return lambda output: set(re.findall(r"Running stage '([^']+)'", output))


def compose_params(folder: Path, overrides: list[str] | None = None) -> Path:
    """params.yaml composed from <folder>/conf as `dvc exp run` composes it (DVC's own function)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(folder / "params.yaml", str((folder / "conf").resolve()), None, "config", "",
                     overrides or [])
    return folder / "params.yaml"


@pytest.fixture(scope="session")
def compose() -> Callable[[Path, list[str] | None], Path]:
    """compose_params as a fixture: params.yaml composed from <folder>/conf with Hydra overrides."""
    return compose_params


@pytest.fixture(scope="session")
def new_project():
    """A git + DVC repository holding this project's pipeline (code, dvc.yaml, .dvc config with Hydra
    composition on, plot template), with nothing committed yet. Its params are this repository's
    params.yaml with `edit` applied; they are written as conf/config.yaml plus conf/study/default.yaml
    (the edited `study:` section) and as params.yaml, their composition. `studies` adds more
    conf/study/<name>.yaml files, each a mapping of top-level sections it overrides."""

    def make(folder: Path, edit: Callable[[dict], None], studies: dict[str, dict] | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
        (folder / "data").mkdir()  # the paper's printed results, which the aggregate stage reads
        shutil.copy(REPO / "data" / "ablation_paper_results.yaml", folder / "data")
        for package in ("multvae", "stages"):
            shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        edit(params)
        (folder / "conf" / "study").mkdir(parents=True)
        base = {k: v for k, v in params.items() if k != "study"}
        base["study"] = {"blends": []}  # as conf/config.yaml: a study file adds its name and rows
        defaults = yaml.safe_load((REPO / "conf" / "config.yaml").read_text())["defaults"]
        (folder / "conf" / "config.yaml").write_text(yaml.safe_dump(
            {"defaults": defaults, **base}, sort_keys=False))
        for name, sections in {"default": {"study": params["study"]}, **(studies or {})}.items():
            (folder / "conf" / "study" / f"{name}.yaml").write_text(
                "# @package _global_\n" + yaml.safe_dump(sections, sort_keys=False))
        compose_params(folder)
        _run(["git", "init", "-q"], folder)
        _run(["git", "config", "user.email", "ci@example.com"], folder)
        _run(["git", "config", "user.name", "ci"], folder)
        _run(["dvc", "init", "-q"], folder)
        shutil.copy(REPO / ".dvc" / "config", folder / ".dvc" / "config")
        shutil.copytree(REPO / ".dvc" / "plots", folder / ".dvc" / "plots")
        return folder

    return make


def shrink(params: dict, *, users: int = 300, items: int = 120, ratings_per_user: float = 25.0,
           tastes: int = 5, heldout_users: int = 30, hidden_dims: tuple[int, ...] = (16,),
           latent_dim: int = 4, epochs: int = 2, seeds: tuple[int, ...] = (1,)) -> None:
    """Edit a project's params (a `new_project` edit) to train on small generated data, on one CPU
    thread, in seconds: what a test through real DVC needs; the study's rows are the test's own."""
    synthetic = {"users": users, "items": items, "ratings_per_user": ratings_per_user, "tastes": tastes,
                 "seed": 0}
    params["data"].update(dataset="synthetic", source=None, heldout_users=heldout_users, synthetic=synthetic)
    params["model"].update(hidden_dims=list(hidden_dims), latent_dim=latent_dim)
    params["train"].update(epochs=epochs, batch_size=50, seeds=list(seeds))
    params["runtime"].update(device="cpu", threads=1)


def two_rows(params: dict, claims: tuple[str, ...] = ("relu_worse", "ease_better_than_original")) -> None:
    """Edit a project's params to the study of two rows, original and ReLU: the catalogue trimmed to
    them, the declared comparisons and the named claims following it."""
    params["variants"] = {"original": {}, "relu": {"model": {"activation": "relu"}}}
    params["comparisons"] = {k: v for k, v in params["comparisons"].items() if k != "recvae_ablation"}
    params["claims"] = {name: params["claims"][name] for name in claims}
    params["tuning"] = {}
    params["study"] = {"name": "default", "rows": ["original", "relu"]}


TINY_PARAMS: dict[str, dict] = {
    "data": {"dataset": "synthetic", "heldout_users": 30,
             "synthetic": {"users": 300, "items": 200, "ratings_per_user": 30, "tastes": 5}},
    "model": {"hidden_dims": [32], "latent_dim": 8},
    "train": {"epochs": 8, "batch_size": 20, "seeds": [98765]},
    "runtime": {"device": "cpu", "threads": 1, "checkpoint_seconds": 0},
    "variants": {"original": {}},
}


@pytest.fixture(scope="session")
def tiny_params():
    """params.yaml text for the tiny synthetic data and a small model, one seed, checkpoints every
    epoch; keyword arguments replace whole sections or keys within them (train={"epochs": 40})."""

    def text(**sections: dict) -> str:
        params = {k: dict(v) for k, v in TINY_PARAMS.items()}
        for name, values in sections.items():
            params[name] = {**params.get(name, {}), **values}
        return dump_params(params)

    return text
