"""Every file a stage reads says what produced it, and the reader checks it; several outputs of one
stage appear together or not at all; one process at a time trains a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multvae.atomic import WriteError, published
from multvae.data import DataError, load_dataset
from multvae.handoff import HandoffError, ease_choice, read_ease_choice, read_rp3_choice, rp3_choice
from multvae.results import Expected, ResultError, summarize, write_result
from multvae.rows import load_results
from multvae.run_lock import RunLockedError, run_lock
from multvae.sealed import seal

METRICS = ["ndcg@100", "recall@20"]
SPLIT = {0: "aaaaaaaaaaaaaaaa"}


def _row(folder: Path, name: str, shift: float, seeds=(1,), split=SPLIT) -> None:
    rng = np.random.default_rng(len(name))
    frames = [pd.DataFrame({"userId": np.arange(50), "fold": 0, "seed": s,
                            **{m: np.clip(rng.uniform(0.2, 0.6, 50) + shift, 0, 1) for m in METRICS}})
              for s in seeds]
    table = pd.concat(frames, ignore_index=True)
    summary = summarize(name, "vae", table, METRICS, {0: 0.4 + shift}, epochs={s: (3, 5) for s in seeds})
    write_result(summary, table, folder / "variants" / f"{name}.json",
                 folder / "per_user" / f"{name}.parquet", split)


@pytest.fixture
def rows(tmp_path) -> Path:
    for d in ("variants", "per_user", "curves"):
        (tmp_path / d).mkdir()
    _row(tmp_path, "a", 0.0)
    _row(tmp_path, "b", 0.05)
    return tmp_path


EXPECTED = Expected(folds=(0,), seeds=(1,), split={"0": SPLIT[0]}, test_users={"0": 50}, test_to_train=0.125)


def _load(root: Path, expected: Expected = EXPECTED):
    return load_results(root / "variants", root / "per_user", root / "curves", METRICS, ["a", "b"], expected)


def test_each_row_is_read_from_its_own_files(rows):
    assert [r.name for r in _load(rows)] == ["a", "b"]


@pytest.mark.parametrize("kind", ["json", "parquet"])
def test_two_rows_files_swapped_are_refused_by_name(rows, kind):
    suffix, folder = (".json", "variants") if kind == "json" else (".parquet", "per_user")
    a, b = rows / folder / f"a{suffix}", rows / folder / f"b{suffix}"
    a.rename(rows / "tmp")
    b.rename(a)
    (rows / "tmp").rename(b)
    with pytest.raises(ResultError,
                       match=r"a\.(json|parquet): (holds the results of 'b'|not the per-user table)"):
        _load(rows)


def test_a_result_of_another_split_seed_set_or_fold_set_is_refused(rows):
    _row(rows, "b", 0.05, split={0: "bbbbbbbbbbbbbbbb"})
    with pytest.raises(ResultError, match=r"b\.json: computed on another split"):
        _load(rows)
    _row(rows, "b", 0.05, seeds=(1, 9))
    with pytest.raises(ResultError, match=r"b\.json: trained with seeds \[1, 9\], the study's train\.seeds"):
        _load(rows)
    _row(rows, "b", 0.05)
    with pytest.raises(ResultError, match=r"computed on folds \[0\], the study runs data\.folds \[0, 1\]"):
        _load(rows, Expected(folds=(0, 1), seeds=(1,), split={"0": SPLIT[0], "1": "c" * 16},
                             test_users={"0": 50, "1": 50}))
    with pytest.raises(ResultError,
                       match=r"test users by fold \{'0': 50\}, the split's statistics say \{'0': 60\}"):
        _load(rows, Expected(folds=(0,), seeds=(1,), split={"0": SPLIT[0]}, test_users={"0": 60}))


def test_a_metric_outside_its_range_in_a_per_user_file_is_refused(rows):
    path = rows / "per_user" / "a.parquet"
    frame = pd.read_parquet(path).assign(**{"ndcg@100": np.inf})
    frame.to_parquet(path)
    summary = json.loads((rows / "variants" / "a.json").read_text())
    from multvae.results import content_hash
    summary["per_user_sha256"] = content_hash(frame)
    (rows / "variants" / "a.json").write_text(json.dumps(seal(summary)))
    with pytest.raises(ResultError, match=r"a\.parquet: .*non-finite or outside \[0, 1\]"):
        _load(rows)


def test_eases_lambda_is_handed_over_for_its_own_split_only(tmp_path):
    path = tmp_path / "lambda.json"
    path.write_text(ease_choice({0: 300.0, 1: 1000.0}, {0: "x" * 16, 1: "y" * 16}, 13).to_text())
    assert read_ease_choice(path, {1: "y" * 16}) == ({1: 1000.0}, 13)
    with pytest.raises(HandoffError, match="no λ chosen on fold 0 of this split"):
        read_ease_choice(path, {0: "z" * 16})
    path.write_text(path.read_text().replace("300.0", "-1"))
    with pytest.raises(HandoffError, match=r"lambda\.json: not EASE's λ"):
        read_ease_choice(path, {0: "x" * 16})
    with pytest.raises(HandoffError, match="run the ease stage first"):
        read_ease_choice(tmp_path / "none.json", {0: "x" * 16})


def test_rp3betas_setting_is_handed_over_for_its_own_split_only(tmp_path):
    path = tmp_path / "choice.json"
    path.write_text(rp3_choice({0: 0.75, 1: 1.0}, {0: 0.6, 1: 0.8}, {0: "x" * 16, 1: "y" * 16}, 24).to_text())
    assert read_rp3_choice(path, {1: "y" * 16}) == ({1: (1.0, 0.8)}, 24)
    with pytest.raises(HandoffError, match="no α and β chosen on fold 0 of this split"):
        read_rp3_choice(path, {0: "z" * 16})
    path.write_text(path.read_text().replace("0.6", "1.5"))  # β is a share of the popularity penalty
    with pytest.raises(HandoffError, match=r"choice\.json: not RP3β's α and β as the rp3beta stage"):
        read_rp3_choice(path, {0: "x" * 16})
    path.write_text(ease_choice({0: 300.0}, {0: "x" * 16}, 13).to_text())  # another baseline's file
    with pytest.raises(HandoffError, match="not RP3β's α and β"):
        read_rp3_choice(path, {0: "x" * 16})


def _prepared(tmp_path: Path, tiny) -> Path:
    from dataclasses import replace

    from multvae.params import defaults
    from multvae.split import split, write_split

    data = replace(defaults()[0].data, dataset="synthetic", heldout_users=30)
    write_split(split(tiny[0], data, tiny[1]), tmp_path / "prepared", tmp_path / "stats.json")
    return tmp_path / "prepared" / "fold-0"


def test_a_prepared_table_changed_behind_the_manifest_is_refused(tmp_path, tiny):
    fold = _prepared(tmp_path, tiny)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["folds"]["0"]["fingerprint"] == load_dataset(fold).fingerprint  # published together
    train = pd.read_parquet(fold / "train.parquet")
    train.assign(item=train["item"][::-1].to_numpy()).to_parquet(fold / "train.parquet")  # same rows
    with pytest.raises(DataError, match=r"fold-0: its tables' fingerprint is .*, the manifest says"):
        load_dataset(fold)
    train.iloc[1:].to_parquet(fold / "train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet: .* rows, the manifest says"):
        load_dataset(fold)


def test_outputs_appear_together_or_not_at_all(tmp_path, monkeypatch):
    a, b, folder = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "results"
    with published() as out:
        out.file(a).write_text("old a")
        out.file(b).write_text("old b")
        (out.folder(folder, "x") / "x").write_text("old x")
    # A failure while writing (the second output): nothing changes, nothing is left beside them.
    with pytest.raises(RuntimeError), published() as out:
        out.file(a).write_text("new a")
        raise RuntimeError("a figure could not be drawn")
    assert a.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "results"]
    # A failure while renaming them into place (the third rename): the two already in are undone.
    real = os.replace
    failed: list[Path] = []

    def failing(src, dst):  # the new folder's rename into place fails, once
        if Path(dst) == folder and Path(src).parent != tmp_path and not failed:
            failed.append(dst)
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(WriteError, match="results: cannot be written"), published() as out:
        out.file(a).write_text("new a")
        out.file(b).write_text("new b")
        (out.folder(folder, "x") / "x").write_text("new x")
    monkeypatch.setattr(os, "replace", real)
    assert (a.read_text(), b.read_text(), (folder / "x").read_text()) == ("old a", "old b", "old x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "results"]


def test_one_process_at_a_time_trains_a_run(tmp_path):
    lock = tmp_path / "run.lock"
    with run_lock(lock, "train x fold 0 seed 1"):
        with pytest.raises(RunLockedError, match=rf"train x fold 0 seed 1 is being trained by another "
                                                 rf"process \(pid {os.getpid()}, lock {lock}\)"):
            with run_lock(lock, "train x fold 0 seed 1"):
                pass
    with run_lock(lock, "again"):  # released on exit
        pass
    # A holder killed with SIGKILL leaves no stale lock: the kernel drops it with the process.
    code = (f"from multvae.run_lock import run_lock\nimport time\nwith run_lock({str(lock)!r}, 'x'):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError):
        with run_lock(lock, "x"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 5
    while True:
        try:
            with run_lock(lock, "x"):
                break
        except RunLockedError:
            assert time.time() < deadline
            time.sleep(0.05)


def test_a_training_log_of_another_run_is_refused(rows):
    from multvae.live_log import EpochLog

    def write(epochs: int, best: int, score: float = 0.4) -> None:
        log = EpochLog(rows / "curves" / "a" / "fold-0" / "seed-1")
        for epoch in range(1, epochs + 1):
            log({"epoch": epoch, "loss": 1.0, "nll": 1.0, "kl": 0.1, "beta": 0.1,
                 **{f"val_{m}": score if epoch == best else 0.3 for m in METRICS}})

    write(5, 3)  # the results: 5 epochs trained, epoch 3 selected, validation 0.4
    assert _load(rows)[0].curves is not None
    cases: list[tuple[tuple[int, int, float], str]] = [
        ((4, 3, 0.4), "4 epochs logged, the model in its results trained 5"),
        ((5, 4, 0.4), "at epoch 4, the model in its results was selected at epoch 3"),
        ((5, 3, 0.45), r"the logs' best validation ndcg@100 average 0\.450000, its results say 0\.400000"),
    ]
    for args, message in cases:
        write(*args)
        with pytest.raises(ResultError, match=message):
            _load(rows)


@pytest.mark.parametrize("edit", [
    lambda s: s["validation_by_fold"].update({"0": 0.9}),  # a score not in the per-user table
    lambda s: s.update(best_epoch=4),
    lambda s: s.pop("test_users"),
])
def test_a_metrics_file_edited_by_hand_is_refused(rows, edit):
    path = rows / "variants" / "a.json"
    summary = json.loads(path.read_text())
    edit(summary)
    path.write_text(json.dumps(summary))
    with pytest.raises(ResultError, match=r"a\.json: its content hash does not match"):
        _load(rows)


def test_statistics_edited_by_hand_are_refused(tmp_path):
    fold = {"fingerprint": SPLIT[0], "test_users": 50, "train_users": 400}
    stats = {"dataset": "ml-1m", "folds": {"0": fold}}
    assert Expected.of_study((0,), (1,), seal(stats), tmp_path / "stats.json") == EXPECTED
    with pytest.raises(ResultError, match=r"stats\.json: its content hash does not match .*repro -f prepare"):
        Expected.of_study((0,), (1,), {**seal(stats), "dataset": "ml-latest-small"}, tmp_path / "stats.json")
