"""Faults a user runs into: debris of killed writes, damaged checkpoints, models used on other data,
file modes. Each gives a clear outcome, and nothing is left half-done."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
import torch

from multvae.atomic import atomic_dir, atomic_path, write_json
from multvae.config import SYNTHETIC_PRESETS, Config, DataConfig, ModelConfig, RuntimeConfig, TrainConfig
from multvae.data import load_dataset
from multvae.evaluation import evaluate_variant
from multvae.model_file import ModelFileError, SavedModel, save_model
from multvae.split import split, write_split
from multvae.synthetic import generate
from multvae.training import train_model

TINY = Config(
    data=DataConfig(dataset="synthetic", heldout_users=30),
    model=ModelConfig(hidden_dims=(16,), latent_dim=8),
    train=TrainConfig(epochs=2, batch_size=50),
)
CPU = RuntimeConfig(device="cpu", threads=1)
CPU_DEVICE = torch.device("cpu")
KS = (20, 50, 100)


def prepared(root: Path, data: DataConfig) -> Path:
    ratings, movies = generate(SYNTHETIC_PRESETS["tiny"])
    write_split(split(ratings, data, movies), root / "prepared", root / "stats.json")
    return root / "prepared"


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
    with atomic_dir(target) as tmp:
        (tmp / "a.pt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.pt").write_text("second, half-written")
        raise RuntimeError("killed")
    assert (target / "a.pt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_outputs_follow_the_umask_not_tempfiles_private_modes(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "d") as tmp:
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
    save_model(tmp_path / "models" / "original" / "seed-0.pt", result.state_dict, SavedModel(
        config=TINY, seed=0, movie_ids=data.movie_ids, data_fingerprint=data.fingerprint,
        best_epoch=result.best_epoch, best_validation=result.best_validation))
    folder = tmp_path / "models" / "original"
    summary, _ = evaluate_variant("original", folder, data, KS, 100, CPU_DEVICE)
    assert summary.test_users == data.test.users.size
    with pytest.raises(ModelFileError, match=r"another prepared split .* run `dvc repro train@original`"):
        evaluate_variant("original", folder, other, KS, 100, CPU_DEVICE)


def test_a_damaged_model_file_is_one_clear_error(tmp_path):
    data = load_dataset(prepared(tmp_path, TINY.data))
    folder = tmp_path / "models" / "original"
    folder.mkdir(parents=True)
    (folder / "seed-0.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match=r"seed-0\.pt: not a readable model file"):
        evaluate_variant("original", folder, data, KS, 100, CPU_DEVICE)
