"""Faults of the file system a user can meet: a full disk, permission denied, a folder where a file
belongs, a damaged Parquet table, binary garbage. Each ends in one line that names the path and the
cause, exit status 1, and the outputs of the previous run stay as they were."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from stages.cli import app


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, *parts: str) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for part in parts:
        assert part in result.stderr, (part, result.stderr)
    assert not any(ch in result.stderr for ch in "\x00\x1b\x07\r"), repr(result.stderr)
    return result.stderr


@pytest.fixture
def project(tmp_path, tiny_params):
    """A tiny project run through download and prepare, with its paths."""
    root = tmp_path / "project"
    root.mkdir()
    paths = {"params": root / "params.yaml", "raw": root / "raw", "prepared": root / "prepared",
             "stats": root / "stats.json", "models": root / "models", "logs": root / "dvclive",
             "checkpoints": root / "ck"}
    paths["params"].write_text(tiny_params())
    assert run("download", "-p", paths["params"], "--out", paths["raw"], "--no-progress").exit_code == 0
    assert run("prepare", "-p", paths["params"], "--raw", paths["raw"], "--out", paths["prepared"],
               "--stats", paths["stats"]).exit_code == 0
    return paths


def _prepare(p):
    return run("prepare", "-p", p["params"], "--raw", p["raw"], "--out", p["prepared"], "--stats", p["stats"])


def _train(p):
    return run("train", "original", "-p", p["params"], "--data", p["prepared"], "--models", p["models"],
               "--logs", p["logs"], "--checkpoints", p["checkpoints"])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_in_prepare_names_the_output_and_keeps_the_previous_split(project, monkeypatch):
    before = _snapshot(project["prepared"])
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _disk_full)
    one_error_line(_prepare(project), f"{project['prepared']}", "cannot be written (No space left on device",
                   "MB free on its disk", "is unchanged")
    assert _snapshot(project["prepared"]) == before
    assert not [p for p in project["prepared"].parent.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_in_download_keeps_the_previous_raw_data(project, monkeypatch, tiny_params):
    before = _snapshot(project["raw"])
    other = tiny_params(data={"synthetic": {"users": 300, "items": 200, "ratings_per_user": 30, "tastes": 5,
                                            "seed": 1}})
    project["params"].write_text(other)  # other data: download must rewrite data/raw
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _disk_full)
    result = run("download", "-p", project["params"], "--out", project["raw"], "--no-progress")
    one_error_line(result, "cannot be written (No space left on device", "is unchanged")
    assert _snapshot(project["raw"]) == before


def test_a_full_disk_when_saving_a_model_says_how_much_it_needed(project, monkeypatch):
    """torch reports it as '[enforce fail at inline_container.cc:672] unexpected pos …'."""
    assert _train(project).exit_code == 0
    model = project["models"] / "original" / "fold-0" / "seed-98765.pt"
    before = model.read_bytes()
    save = torch.save

    def full_for_models(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "weights_sha256" in obj:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8448 vs 8368")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_for_models)
    one_error_line(_train(project), f"{model}: cannot be written (torch could not write it",
                   "needs about", "MB free on its disk")
    assert model.read_bytes() == before


def test_permission_denied_names_the_folder(project, monkeypatch):
    folder = str(project["prepared"].parent)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", folder)

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    one_error_line(_prepare(project), f"error: {folder}: Permission denied")


def test_a_folder_given_as_data_source_is_refused(project, tiny_params, tmp_path):
    project["params"].write_text(tiny_params(data={"dataset": "auto", "source": str(tmp_path)}))
    result = run("download", "-p", project["params"], "--out", project["raw"], "--no-progress")
    one_error_line(result, f"data.source: {tmp_path} is a folder or device, not a file")


def test_a_prepared_table_overwritten_with_garbage_is_one_escaped_line(project):
    table = project["prepared"] / "fold-0" / "train.parquet"
    table.write_bytes(b"\x1b[2J\x00\x07garbage\xff\xfe" * 20)
    one_error_line(_train(project), f"{table}: not a readable Parquet file", "dvc repro -f prepare")


def test_binary_garbage_as_ratings_is_never_printed_raw(project, tiny_params, tmp_path):
    source = tmp_path / "ratings.csv"
    source.write_bytes(b"userId,movieId,rating\n1,2,\x1b[31m\x00\x07\r\xff\n" * 3)
    project["params"].write_text(tiny_params(data={"dataset": "auto", "source": str(source)}))
    result = run("download", "-p", project["params"], "--out", project["raw"], "--no-progress")
    one_error_line(result, str(source))


def test_params_changed_while_a_stage_runs_stop_it_before_it_writes(project, monkeypatch, tiny_params):
    """What a second `dvc exp run` in the same workspace does: it rewrites params.yaml under a
    running stage. The stage must not record outputs under parameters they were not computed with."""
    import multvae.training

    train_model = multvae.training.train_model

    def edited_midway(*args, **kwargs):
        result = train_model(*args, **kwargs)
        project["params"].write_text(tiny_params(train={"epochs": 3}))
        return result

    monkeypatch.setattr(multvae.training, "train_model", edited_midway)
    one_error_line(_train(project), f"{project['params']} changed while this stage ran",
                   "nothing was written", "--queue")
    assert not (project["models"] / "original").exists()
