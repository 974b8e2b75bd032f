import dataclasses
import functools
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from multvae.live_log import read_log
from multvae.model import MultVAE
from multvae.params import defaults
from multvae.training import TrainingError, train_model

BASE, RUNTIME = defaults()

SMALL = replace(BASE,
    data=replace(BASE.data, dataset="synthetic", heldout_users=30),
    model=replace(BASE.model, hidden_dims=(32,), latent_dim=8),
    beta=replace(BASE.beta, total_anneal_steps=20),
    train=replace(BASE.train, epochs=6, batch_size=50),
)
EVERY_EPOCH = replace(RUNTIME, checkpoint_seconds=0)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset  # conftest: the tiny ratings, 30 validation and 30 test users


def test_same_seed_same_metrics(dataset):
    a = train_model(SMALL, dataset, seed=1, log=lambda _: None)
    b = train_model(SMALL, dataset, seed=1, log=lambda _: None)
    c = train_model(SMALL, dataset, seed=2, log=lambda _: None)
    cols = ["loss", "val_ndcg@100", "val_recall@20"]
    pd.testing.assert_frame_equal(a.curves[cols], b.curves[cols])
    assert a.best_epoch == b.best_epoch
    assert not a.curves["loss"].equals(c.curves["loss"])


def test_best_epoch_is_the_best_validation_ndcg(dataset):
    result = train_model(SMALL, dataset, seed=3, log=lambda _: None)
    best = result.curves.loc[result.curves["val_ndcg@100"].idxmax()]
    assert result.best_epoch == best["epoch"]
    assert result.best_validation["val_ndcg@100"] == best["val_ndcg@100"]


@pytest.mark.slow
def test_training_learns_beyond_its_first_epoch(dataset):
    cfg = dataclasses.replace(SMALL, train=dataclasses.replace(SMALL.train, epochs=15))
    curves = train_model(cfg, dataset, seed=0, log=lambda _: None).curves
    assert curves["val_ndcg@100"].iloc[-3:].max() > curves["val_ndcg@100"].iloc[0] + 0.02
    assert curves["loss"].iloc[-1] < curves["loss"].iloc[0]


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(dataset, tmp_path):
    full = train_model(SMALL, dataset, seed=5, log=lambda _: None)
    ckpt = tmp_path / "ckpt.pt"

    def stop_at_epoch_4(line):
        # Raised while epoch 4 is reported, before its checkpoint: epochs 1-3 are saved.
        if line.startswith("epoch   4/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(SMALL, dataset, seed=5, runtime=EVERY_EPOCH, checkpoint=ckpt, log=stop_at_epoch_4)
    lines: list[str] = []
    resumed = train_model(SMALL, dataset, seed=5, runtime=EVERY_EPOCH, checkpoint=ckpt, log=lines.append)
    assert lines[0].startswith("resuming") and "after epoch 3" in lines[0]
    cols = ["epoch", "loss", "val_ndcg@100", "val_recall@50"]
    pd.testing.assert_frame_equal(full.curves[cols], resumed.curves[cols])
    assert full.best_epoch == resumed.best_epoch


def test_checkpoints_follow_their_time_budget_and_the_last_epoch_is_always_saved(dataset, tmp_path,
                                                                                 monkeypatch):
    import multvae.training as training

    saved: list[int] = []
    original = training._save_checkpoint

    def counting(path, state) -> None:
        saved.append(state["epoch"])
        original(path, state)

    monkeypatch.setattr(training, "_save_checkpoint", counting)
    train_model(SMALL, dataset, seed=5, runtime=replace(RUNTIME, checkpoint_seconds=3600),
                checkpoint=tmp_path / "a.pt", log=lambda _: None)
    assert saved == [6]
    saved.clear()
    train_model(SMALL, dataset, seed=5, runtime=EVERY_EPOCH, checkpoint=tmp_path / "b.pt", log=lambda _: None)
    assert saved == [1, 2, 3, 4, 5, 6]


def test_checkpoint_of_other_parameters_is_not_resumed(dataset, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    train_model(SMALL, dataset, seed=5, checkpoint=ckpt, log=lambda _: None)
    other = dataclasses.replace(SMALL, model=dataclasses.replace(SMALL.model, latent_dim=4))
    lines: list[str] = []
    train_model(other, dataset, seed=5, checkpoint=ckpt, log=lines.append)
    assert lines[0].startswith("ignoring")


def test_non_finite_loss_names_epoch_and_batch(dataset):
    cfg = dataclasses.replace(SMALL, optim=replace(BASE.optim, name="sgd", lr=1e12))
    with pytest.raises(TrainingError, match=r"epoch \d+, batch \d+ of \d+"):
        train_model(cfg, dataset, seed=0, log=lambda _: None)


@pytest.mark.parametrize("bad_update", [1, 7, 13])
def test_the_first_non_finite_update_is_named_although_losses_are_read_once_an_epoch(dataset, bad_update):
    """The losses stay on the device until the epoch ends; the message still names the update
    whose loss first went non-finite (a weight set to NaN just before it), not a later one."""
    per_epoch = -(-dataset.train.shape[0] // SMALL.train.batch_size)
    models: list[MultVAE] = []
    epochs: list[dict] = []

    def on_update(step: int, model) -> bool:
        models.append(model)
        return False

    def before_batch(step: int) -> None:
        if step == bad_update:
            last = models[-1].decoder[-1]
            assert isinstance(last, torch.nn.Linear)
            with torch.no_grad():
                last.bias.fill_(float("nan"))

    epoch, batch = bad_update // per_epoch + 1, bad_update % per_epoch + 1
    where = (rf"non-finite loss \(nan\) at epoch {epoch}, batch {batch} of {per_epoch} "
             rf"\(update {bad_update + 1}\)")
    lines: list[str] = []
    run = functools.partial(train_model, SMALL, dataset, seed=0, log=lines.append, on_update=on_update,
                            before_batch=before_batch, on_epoch=epochs.append)
    if epoch == 1:  # no epoch before it to keep
        with pytest.raises(TrainingError, match=where):
            run()
    else:  # an early stop: the best epoch before it is the result, and the result says where
        result = run()
        assert result.diverged is not None and re.fullmatch(where, result.diverged)
        assert result.state_dict is not None and 1 <= result.best_epoch < epoch
        assert all(torch.isfinite(t).all() for t in result.state_dict.values())
        assert re.search(where + rf": training stops, keeping epoch {result.best_epoch}", lines[-1])
    assert len(epochs) == epoch - 1  # no log row (and no checkpoint) for the failed epoch


# The tiny params (tests/conftest.py) with 40 epochs and an anneal that ends within them.
LONG = {"train": {"epochs": 40}, "beta": {"total_anneal_steps": 20}}


def _cli(args, cwd, **kw):
    exe = Path(sys.executable).with_name("multvae")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_train_stage_killed_mid_run_resumes_to_same_metrics(tmp_path, tiny_params):
    runs = {}
    for name in ("killed", "straight"):
        cwd = tmp_path / name
        cwd.mkdir()
        (cwd / "params.yaml").write_text(tiny_params(**LONG))
        for cmd in (["download"], ["prepare"]):
            assert _cli(cmd, cwd).returncode == 0
        runs[name] = cwd
    cwd = runs["killed"]
    exe = Path(sys.executable).with_name("multvae")
    proc = subprocess.Popen([str(exe), "train", "original"], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = cwd / ".checkpoints" / "original" / "fold-0" / "seed-98765.pt"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    assert not (cwd / "models" / "original").exists()
    resumed = _cli(["train", "original"], cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert not ckpt.exists()
    assert _cli(["train", "original"], runs["straight"]).returncode == 0
    for cwd in runs.values():
        assert _cli(["evaluate", "original"], cwd).returncode == 0
    a, b = (pd.read_parquet(c / "metrics/per_user/original.parquet") for c in runs.values())
    pd.testing.assert_frame_equal(a, b)
    ca, cb = (read_log(c / "dvclive/original/fold-0/seed-98765", 0, 98765) for c in runs.values())
    pd.testing.assert_frame_equal(ca, cb)  # the resumed run's DVCLive log, row for row
    assert len(ca) == 40


@pytest.mark.slow
def test_the_per_epoch_log_grows_while_training_runs(tmp_path, tiny_params):
    (tmp_path / "params.yaml").write_text(tiny_params(**LONG))
    for cmd in (["download"], ["prepare"]):
        assert _cli(cmd, tmp_path).returncode == 0
    exe = Path(sys.executable).with_name("multvae")
    log = tmp_path / "dvclive" / "original" / "fold-0" / "seed-98765" / "plots" / "metrics"
    log = log / "val_ndcg@100.tsv"
    proc = subprocess.Popen([str(exe), "train", "original"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen: list[int] = []
    while proc.poll() is None:
        lines = len(log.read_text().splitlines()) - 1 if log.exists() else 0
        if not seen or lines != seen[-1]:
            seen.append(lines)
        time.sleep(0.02)
    assert proc.returncode == 0
    assert len([n for n in seen if 0 < n < 40]) >= 3, seen  # read back at several epochs mid-run
    assert seen == sorted(seen) and len(log.read_text().splitlines()) == 41
