"""Faults a user runs into: debris of killed writes, damaged checkpoints, models used on other data,
file modes. Each gives a clear outcome, and nothing is left half-done."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import dump_params

from multvae.atomic import atomic_dir, atomic_path, write_json
from multvae.blend import evaluate_blend
from multvae.config import SYNTHETIC_PRESETS, DataConfig
from multvae.data import load_dataset
from multvae.evaluation import evaluate_variant
from multvae.model_file import ModelFileError, SavedModel, save_model
from multvae.params import defaults
from multvae.split import split, write_split
from multvae.synthetic import generate
from multvae.training import train_model

BASE, RUNTIME = defaults()

TINY = replace(BASE,
    data=replace(BASE.data, dataset="synthetic", heldout_users=30),
    model=replace(BASE.model, hidden_dims=(16,), latent_dim=8),
    train=replace(BASE.train, epochs=2, batch_size=50),
)
CPU = replace(RUNTIME, device="cpu", threads=1, checkpoint_seconds=0)
CPU_DEVICE = torch.device("cpu")
KS = (20, 50, 100)


def prepared(root: Path, data: DataConfig) -> Path:
    ratings, movies = generate(SYNTHETIC_PRESETS["tiny"])
    write_split(split(ratings, data, movies), root / "prepared", root / "stats.json")
    return root / "prepared" / "fold-0"


def test_the_next_write_removes_what_a_killed_write_left(tmp_path):
    target = tmp_path / "out" / "table.json"
    target.parent.mkdir()
    debris = [target.parent / ".table.json.abc123.tmp", target.parent / ".table.json.work.x1.tmp",
              target.parent / ".table.json.old"]
    debris[0].write_text("half a file")
    debris[1].mkdir()
    (debris[1] / "ratings.csv").write_text("1,2,3\n")
    debris[2].mkdir()
    other = target.parent / ".other.json.abc.tmp"  # another output's temporary is not touched
    other.write_text("x")
    write_json(target, {"a": 1})
    assert not any(p.exists() for p in debris) and other.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".other.json.abc.tmp", "table.json"]


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path):
    target = tmp_path / "models"
    with atomic_dir(target, "*") as tmp:
        (tmp / "a.pt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target, "*") as tmp:
        (tmp / "a.pt").write_text("second, half-written")
        raise RuntimeError("killed")
    assert (target / "a.pt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_outputs_follow_the_umask_not_tempfiles_private_modes(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "d", "*") as tmp:
            (tmp / "x").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint", None], ids=["empty", "garbage", "truncated"])
def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_afresh(tmp_path, damage):
    data = load_dataset(prepared(tmp_path, TINY.data))
    checkpoint = tmp_path / "ckpt" / "seed-0.pt"
    full = train_model(TINY, data, 0, CPU, checkpoint=checkpoint, log=lambda _: None)
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: len(content) // 2] if damage is None else damage)
    lines: list[str] = []
    again = train_model(TINY, data, 0, CPU, checkpoint=checkpoint, log=lines.append)
    assert "cannot be read" in lines[0] and "set aside as seed-0.pt.unreadable-" in lines[0]
    assert not any("resuming" in line for line in lines)
    assert [p.name.startswith("seed-0.pt.unreadable-") for p in checkpoint.parent.iterdir()].count(True) == 1
    assert again.best_epoch == full.best_epoch
    assert again.curves["loss"].tolist() == full.curves["loss"].tolist()


def test_evaluate_refuses_a_model_of_another_split_with_as_many_items(tmp_path):
    data = load_dataset(prepared(tmp_path / "a", TINY.data))
    other = load_dataset(prepared(tmp_path / "b", dataclasses.replace(TINY.data, seed=TINY.data.seed + 1)))
    assert data.n_items == other.n_items and data.fingerprint != other.fingerprint
    result = train_model(TINY, data, 0, CPU, log=lambda _: None)
    assert result.state_dict is not None
    save_model(tmp_path / "models" / "original" / "fold-0" / "seed-0.pt", result.state_dict, SavedModel(
        config=TINY, seed=0, movie_ids=data.movie_ids, data_fingerprint=data.fingerprint,
        best_epoch=result.best_epoch, best_validation=result.best_validation))
    folder = tmp_path / "models" / "original"
    summary, _ = evaluate_variant("original", folder.parent, (0,), {0: data}, KS, 100, CPU_DEVICE)
    assert summary.test_users == data.test.users.size
    with pytest.raises(ModelFileError, match=r"another prepared split .* run `dvc repro train@original-0-0`"):
        evaluate_variant("original", folder.parent, (0,), {0: other}, KS, 100, CPU_DEVICE)


def test_a_damaged_model_file_is_one_clear_error(tmp_path):
    data = load_dataset(prepared(tmp_path, TINY.data))
    folder = tmp_path / "models" / "original"
    (folder / "fold-0").mkdir(parents=True)
    (folder / "fold-0" / "seed-0.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match=r"seed-0\.pt: not a readable model file"):
        evaluate_variant("original", folder.parent, (0,), {0: data}, KS, 100, CPU_DEVICE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A prepared tiny split and the model of `original` for seed 0, saved where evaluate looks."""
    root = tmp_path_factory.mktemp("trained")
    data = load_dataset(prepared(root, TINY.data))
    result = train_model(TINY, data, 0, CPU, log=lambda _: None)
    assert result.state_dict is not None
    path = root / "models" / "original" / "fold-0" / "seed-0.pt"
    save_model(path, result.state_dict, SavedModel(
        config=TINY, seed=0, movie_ids=data.movie_ids, data_fingerprint=data.fingerprint,
        best_epoch=result.best_epoch, best_validation=result.best_validation))
    return data, path, result.state_dict


def _copy(path: Path, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_bytes(path.read_bytes())
    return to


def test_sixteen_bytes_overwritten_inside_the_weights_are_refused(trained, tmp_path):
    """The zip container loads such a file without complaint; the digest written with the weights
    does not match it any more."""
    data, path, state = trained
    damaged = _copy(path, tmp_path / "models" / "original" / "fold-0" / "seed-0.pt")
    raw = bytearray(damaged.read_bytes())
    at = raw.find(state["decoder.0.weight"].numpy().tobytes()[:64]) if "decoder.0.weight" in state else -1
    if at < 0:  # whichever tensor is stored first: its bytes are in the file as they are in memory
        first = next(iter(state.values()))
        at = raw.find(first.numpy().tobytes()[:64])
    assert at > 0
    raw[at + 16: at + 32] = bytes(16)
    damaged.write_bytes(bytes(raw))
    assert torch.load(damaged, weights_only=True)["state_dict"]  # still loads as a zip
    with pytest.raises(ModelFileError, match=r"seed-0\.pt: its weights do not match the SHA-256 written with "
                                             r"them: the file was changed or damaged after training"):
        evaluate_variant("original", tmp_path / "models", (0,), {0: data}, KS, 100, CPU_DEVICE)


def test_a_model_of_another_variant_filed_under_this_one_is_refused(trained, tmp_path):
    data, path, _ = trained
    _copy(path, tmp_path / "models" / "relu" / "fold-0" / "seed-0.pt")
    relu = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, activation="relu"))
    with pytest.raises(ModelFileError, match=r"relu/fold-0/seed-0\.pt was trained with other settings than "
                                             r"asked for: model\.activation 'tanh' \(asked: 'relu'\); "
                                             r"run `dvc repro train@relu-0-0`"):
        evaluate_variant("relu", tmp_path / "models", (0,), {0: data}, KS, 100, CPU_DEVICE, expected=relu)
    # The seed list is not a setting of one model: adding seeds keeps the trained ones valid.
    more_seeds = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, seeds=(0, 1)))
    _copy(path, tmp_path / "models" / "original" / "fold-0" / "seed-0.pt")
    evaluate_variant("original", tmp_path / "models", (0,), {0: data}, KS, 100, CPU_DEVICE,
                     expected=more_seeds)


@pytest.mark.parametrize("stage", ["evaluate", "blend"])
def test_a_model_filed_under_another_seed_is_refused(trained, tmp_path, stage):
    data, path, _ = trained
    _copy(path, tmp_path / "models" / "original" / "fold-0" / "seed-1.pt")
    with pytest.raises(Exception, match=r"seed-1\.pt holds the model of seed 0, fold 0, not seed 1, fold 0"):
        if stage == "evaluate":
            evaluate_variant("original", tmp_path / "models", (1,), {0: data}, KS, 100, CPU_DEVICE)
        else:
            evaluate_blend("original_ease", "original", tmp_path / "models", (1,), {0: data}, {0: 10.0},
                           (0.0, 1.0), KS, 100, CPU_DEVICE, TINY)


def test_a_checkpoint_whose_weights_were_changed_is_set_aside(trained, tmp_path):
    data, _, _ = trained
    checkpoint = tmp_path / "ck.pt"
    short = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=2))
    train_model(short, data, 0, CPU, checkpoint=checkpoint, log=lambda _: None)
    state = torch.load(checkpoint, weights_only=False)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1.0  # altered, digest kept
    torch.save(state, checkpoint)
    lines: list[str] = []
    train_model(short, data, 0, CPU, checkpoint=checkpoint, log=lines.append)
    assert any("cannot be read" in line and "set aside" in line for line in lines), lines
    assert list(tmp_path.glob("ck.pt.unreadable-*"))


def run(*args: object):
    from typer.testing import CliRunner

    from stages.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


HEADER = "userId,movieId,rating\n"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("r.csv", HEADER + "1,10,4\n2,20,7.5\n", r"column rating must lie in 0\.\.5 .* found 7\.5 at data row 2"),
    ("r.csv", HEADER + "1,10,-1\n", r"column rating must lie in 0\.\.5 .* found -1 at data row 1"),
    ("r.csv", HEADER + "1.7,10,4\n1.2,11,4\n", r"column userId must hold whole .* 1\.7 at data row 1"),
    ("r.csv", HEADER + "1,10,4\n1,10.5,4\n", r"column movieId must hold whole .* 10\.5 at data row 2"),
    ("r.dat", "1,10,4,978300760\n", r"a \.dat ratings file has lines userId::movieId::rating"),
], ids=["rating-above-5", "rating-below-0", "fractional-user", "fractional-movie", "dat-with-commas"])
def test_bad_ratings_are_one_line_errors_naming_the_file(tmp_path, params_file, name, content, message):
    source = tmp_path / name
    source.write_text(content)
    params = params_file(source=str(source))
    result = run("download", "-p", params, "--out", tmp_path / "raw", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {source}: ") and result.stderr.count("\n") == 1
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "raw").exists() and [p.name for p in tmp_path.iterdir()] != []
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_pair_rated_twice_keeps_its_latest_rating_and_is_counted(tmp_path, params_file):
    rows = ["userId,movieId,rating,timestamp"]
    rows += [f"{u},{m},4,100" for u in range(1, 13) for m in range(1, 7)]
    rows += ["1,1,1,200", "2,2,5,50"]  # user 1 later disliked movie 1; user 2's earlier 5 is older
    source = tmp_path / "r.csv"
    source.write_text("\n".join(rows) + "\n")
    params = params_file(source=str(source), heldout_users=2)
    assert run("download", "-p", params, "--out", tmp_path / "raw", "--no-progress").exit_code == 0
    info = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert info["duplicate_ratings_dropped"] == 2
    raw = pd.read_parquet(tmp_path / "raw" / "ratings.parquet")
    assert not raw.duplicated(["userId", "movieId"]).any()
    assert raw.set_index(["userId", "movieId"]).loc[(1, 1), "rating"] == 1.0
    assert raw.set_index(["userId", "movieId"]).loc[(2, 2), "rating"] == 4.0
    result = run("prepare", "-p", params, "--raw", tmp_path / "raw", "--out", tmp_path / "prepared",
                 "--stats", tmp_path / "stats.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "stats.json").read_text())["duplicate_ratings_dropped"] == 2


def test_a_cut_off_longer_than_the_item_list_is_refused(tmp_path):
    data = prepared(tmp_path, TINY.data).parent
    params = tmp_path / "params.yaml"
    params.write_text(dump_params({"eval": {"ks": [20, 50, 1000]}}))
    result = run("popularity", "-p", params, "--data", data, "--metrics", tmp_path / "m.json",
                 "--per-user", tmp_path / "u.parquet")
    assert result.exit_code == 1
    assert re.search(r"eval\.ks: cut-off 1000 is larger than the 200 items of .*prepared", result.stderr)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "u.parquet").exists()


@pytest.mark.parametrize("name", ["cap.0.2", "min rating 3", "a/b", "x;rm", "café"])
def test_a_variant_name_a_stage_name_cannot_carry_stops_the_first_stage(tmp_path, name):
    # dvc repro runs download first (on every repro), so this message comes before DVC's own.
    params = tmp_path / "params.yaml"
    params.write_text(dump_params({"data": {"dataset": "synthetic"}, "variants": {name: {}}}))
    result = run("download", "-p", params, "--out", tmp_path / "raw", "--no-progress")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert re.search(rf"^error: .*params\.yaml: variants\[{re.escape(repr(name))}\]: a name may hold only "
                     r"letters, digits and '_'", result.stderr)
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(("override", "key"), [({"data": {"min_rating": 3.0}}, "data"),
                                               ({"eval": {"ks": [5]}}, "eval"),
                                               ({"baselines": {"ease_lambdas": [1.0]}}, "baselines"),
                                               ({"runtime": {"threads": 1}}, "runtime")])
def test_a_variant_overriding_what_every_row_shares_is_refused_at_the_first_stage(tmp_path, override, key):
    """The data, evaluation and baselines are computed once for every row: a variant's override
    there would be ignored, and the variant would be the original under a new name."""
    params = tmp_path / "params.yaml"
    params.write_text(dump_params({"data": {"dataset": "synthetic"}, "variants": {"v": override}}))
    result = run("download", "-p", params, "--out", tmp_path / "raw", "--no-progress")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert re.search(rf"variants\.v\.{key}: a variant may override only model, beta, optim, train",
                     result.stderr)
    assert not (tmp_path / "raw").exists()
